"""Config loading and `edged check-config`: FILE:LINE: key: reason errors, path resolution."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edged.tools.cli import main
from edged.config import DEFAULT_CONFIG, load_config, resolve_config_path
from edged.errors import ConfigError
from tests.conftest import edged, shared_or_skip

ERROR_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?P<key>\S+): (?P<reason>.+)$")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """Any existing file will do: check-config only checks that model paths exist."""
    p = tmp_path / "model.tflite"
    p.write_bytes(b"not really a model; check-config does not open it")
    return p


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def minimal(model: Path) -> str:
    return f"models:\n  default:\n    path: {model}\ncameras:\n  cam1:\n    source: /dev/video0\n"


def check(path: Path | str, cwd: Path | None = None, real: bool = False):
    """`edged check-config -c PATH`: in a subprocess when `real`, else through cli.main() in
    this process (much faster; an unexpected exception fails the test just the same)."""
    if real:
        proc = edged("check-config", "-c", str(path), cwd=cwd)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["check-config", "-c", str(path)])
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["edged"], rc, out.getvalue(), err.getvalue())


def error_lines(proc: subprocess.CompletedProcess) -> list[tuple[str, int, str, str]]:
    """Every stderr line parsed as FILE:LINE: key: reason (fails on any other line)."""
    out = []
    for line in proc.stderr.splitlines():
        m = ERROR_LINE.match(line)
        assert m, f"not a FILE:LINE: key: reason line: {line!r}"
        out.append((m["file"], int(m["line"]), m["key"], m["reason"]))
    return out


# --- valid -----------------------------------------------------------------------------------


def test_minimal_valid_config_exits_0(tmp_path, model_file):
    cfg = write(tmp_path, minimal(model_file))
    proc = check(cfg, real=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{cfg}: ok"
    assert proc.stderr == ""


def test_minimal_valid_config_with_real_model(tmp_path):
    model = shared_or_skip() / "vww" / "vww_96_int8.tflite"
    proc = check(write(tmp_path, minimal(model)))
    assert proc.returncode == 0, proc.stderr


def test_load_config_defaults(tmp_path, model_file):
    cfg = load_config(write(tmp_path, minimal(model_file)))
    assert cfg.mqtt.port == 1883 and cfg.mqtt.qos == 1
    assert cfg.models["default"].workers == 2
    assert cfg.cameras["cam1"].model == "default"
    assert cfg.cameras["cam1"].source == "/dev/video0"  # devices are not turned into paths


# --- one error, the right line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "line", "key", "reason"),
    [
        ("mqtt:\n  host: localhost\n  prot: 1\n", 9, "mqtt.prot", "unknown key"),
        ("camras:\n  x: {}\n", 7, "camras", "unknown key"),
        ("mqtt:\n  qos: 3\n", 8, "mqtt.qos", "0, 1 or 2"),
        ("mqtt:\n  port: 0\n", 8, "mqtt.port", "greater than or equal to 1"),
        ("mqtt:\n  port: 70000\n", 8, "mqtt.port", "less than or equal to 65535"),
        ("mqtt:\n  port: abc\n", 8, "mqtt.port", "valid integer"),
        ("mqtt:\n  reconnect:\n    initial_s: 5\n    max_s: 1\n", 8, "mqtt.reconnect",
         "max_s must be >= initial_s"),
        ("log_level: loud\n", 7, "log_level", "'debug', 'info', 'warning' or 'error'"),
        ("metrics:\n  listen: nope\n", 8, "metrics.listen", "HOST:PORT"),
    ],
)
def test_single_error_names_key_and_line(tmp_path, model_file, extra, line, key, reason):
    # The minimal config is 6 lines, so appended keys start at line 7.
    cfg = write(tmp_path, minimal(model_file) + extra)
    assert cfg.read_text().splitlines()[5].strip() == "source: /dev/video0"
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    f, got_line, got_key, got_reason = errors[0]
    assert f == str(cfg)
    assert (got_line, got_key) == (line, key)
    assert reason in got_reason


@pytest.mark.parametrize(
    ("model_extra", "camera_extra", "line", "key", "reason"),
    [
        ("    workers: 0\n", "", 4, "models.default.workers", "greater than or equal to 1"),
        ("    threads: 65\n", "", 4, "models.default.threads", "less than or equal to 64"),
        ("    top_k: 0\n", "", 4, "models.default.top_k", "greater than or equal to 1"),
        ("    std: 0\n", "", 4, "models.default.std", "std must not be 0"),
        ("    std: [1, 0, 1]\n", "", 4, "models.default.std", "std must not be 0"),
        ("    pth: x\n", "", 4, "models.default.pth", "unknown key"),
        ("", "    fps: -1\n", 7, "cameras.cam1.fps", "greater than or equal to 0"),
        ("", "    policy: oldest\n", 7, "cameras.cam1.policy", "'latest' or 'every'"),
        ("", "    timeout_s: 0\n", 7, "cameras.cam1.timeout_s", "greater than 0"),
    ],
)
def test_nested_error_line(tmp_path, model_file, model_extra, camera_extra, line, key, reason):
    cfg = write(tmp_path, f"models:\n  default:\n    path: {model_file}\n{model_extra}"
                          f"cameras:\n  cam1:\n    source: /dev/video0\n{camera_extra}")
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert errors[0][1:3] == (line, key)
    assert reason in errors[0][3]


def test_multiple_errors_each_with_line_in_line_order(tmp_path, model_file):
    cfg = write(tmp_path, f"""
    mqtt:
      prot: 1
      qos: 3
    models:
      default:
        path: {model_file}
        std: [1, 0, 1]
        workers: 0
    cameras:
      cam1:
        source: /dev/video0
        fps: -1
    camras: {{}}
    """)
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    got = [(line, key) for _, line, key, _ in error_lines(proc)]
    assert got == [
        (2, "mqtt.prot"),
        (3, "mqtt.qos"),
        (7, "models.default.std"),
        (8, "models.default.workers"),
        (12, "cameras.cam1.fps"),
        (13, "camras"),
    ]


def test_load_config_raises_config_error_with_lines(tmp_path, model_file):
    cfg = write(tmp_path, minimal(model_file) + "mqtt:\n  qos: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith(f"{cfg}:8: mqtt.qos: ")


# --- missing / structural --------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["models", "cameras"])
def test_missing_required_section_is_named(tmp_path, model_file, missing):
    sections = {
        "models": f"models:\n  default:\n    path: {model_file}\n",
        "cameras": "cameras:\n  cam1:\n    source: /dev/video0\n",
    }
    cfg = write(tmp_path, "node_id: n1\n" + "".join(v for k, v in sections.items() if k != missing))
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert [(e[2], e[3]) for e in errors] == [(missing, "required key is missing")]


def test_missing_required_nested_key_points_at_parent(tmp_path, model_file):
    cfg = write(tmp_path, f"""
    models:
      default:
        path: {model_file}
    cameras:
      cam1:
        model: default
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert [(e[1], e[2], e[3]) for e in errors] == [
        (5, "cameras.cam1.source", "required key is missing")]


def test_empty_models_mapping(tmp_path):
    cfg = write(tmp_path, "models: {}\ncameras:\n  c:\n    source: 0\n")
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert [(e[1], e[2]) for e in errors] == [(1, "models")]
    assert "at least one entry" in errors[0][3]


def test_invalid_yaml_syntax_gives_file_and_line(tmp_path):
    cfg = write(tmp_path, "models:\n  default:\n    path: [a, b\ncameras: {}\n")
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    m = re.match(rf"^{re.escape(str(cfg))}:(\d+): invalid YAML: ", lines[0])
    assert m, lines[0]
    assert int(m[1]) == 4  # where the parser finds the flow sequence is not closed


def test_bad_indentation_gives_line(tmp_path):
    cfg = write(tmp_path, "mqtt:\n  host: a\n port: 5\n")
    proc = check(cfg)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{cfg}:3: invalid YAML")


def test_duplicate_key_gives_line_of_second(tmp_path, model_file):
    cfg = write(tmp_path, minimal(model_file) + "mqtt:\n  port: 1\n  port: 2\n")
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{cfg}:9: duplicate key 'port'"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_top_level(tmp_path, text):
    cfg = write(tmp_path, text)
    proc = check(cfg)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{cfg}:1: the config must be a YAML mapping of keys"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    cfg = write(tmp_path, text)
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{cfg}:1: the config must be a YAML mapping of keys"]


def test_file_not_found(tmp_path):
    cfg = tmp_path / "nope.yaml"
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{cfg}: cannot read config")
    assert "No such file" in lines[0]


def test_directory_instead_of_file(tmp_path):
    proc = check(tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path}: cannot read config")


def test_non_utf8_file(tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("node_id: caf\u00e9\n".encode("latin-1"))
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{cfg}:1: not a UTF-8 text file (byte 0xe9 at "
                                        "column 13); save it as UTF-8"]


# --- cross-references and files --------------------------------------------------------------


def test_camera_with_unknown_model(tmp_path, model_file):
    cfg = write(tmp_path, f"""
    models:
      default:
        path: {model_file}
    cameras:
      cam1:
        source: /dev/video0
      cam2:
        source: /dev/video1
        model: nope
    """)
    proc = check(cfg, real=True)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1
    assert errors[0][1:3] == (9, "cameras.cam2.model")
    assert "'nope'" in errors[0][3]


def test_model_path_not_found_line_of_key(tmp_path):
    cfg = write(tmp_path, """
    node_id: n1
    models:
      default:
        workers: 1
        path: missing.tflite
    cameras:
      cam1:
        source: 0
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1
    assert errors[0][1:3] == (5, "models.default.path")
    assert str(tmp_path / "missing.tflite") in errors[0][3]
    assert "not found" in errors[0][3]


def test_labels_path_not_found_line_of_key(tmp_path, model_file):
    cfg = write(tmp_path, f"""
    models:
      default:
        path: {model_file}
        labels: nolabels.txt
    cameras:
      cam1:
        source: 0
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1
    assert errors[0][1:3] == (4, "models.default.labels")
    assert str(tmp_path / "nolabels.txt") in errors[0][3]


def test_model_path_that_is_a_directory_is_not_a_file(tmp_path):
    (tmp_path / "adir").mkdir()
    cfg = write(tmp_path, "models:\n  default:\n    path: adir\ncameras:\n  c:\n    source: 0\n")
    proc = check(cfg)
    assert proc.returncode == 2
    assert [e[1:3] for e in error_lines(proc)] == [(3, "models.default.path")]


def test_resolve_errors_in_line_order(tmp_path):
    cfg = write(tmp_path, """
    cameras:
      c:
        source: 0
        model: nope
    models:
      default:
        path: missing.tflite
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    assert [e[1] for e in error_lines(proc)] == [4, 7]


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#b", "a:b", ""])
def test_camera_name_with_topic_characters_rejected(tmp_path, model_file, bad):
    cfg = write(tmp_path, f"""
    models:
      default:
        path: {model_file}
    cameras:
      '{bad}':
        source: 0
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert len(errors) == 1
    assert errors[0][1:3] == (5, f"cameras.{bad}")  # the offending key's own line
    assert "MQTT topic level" in errors[0][3]


@pytest.mark.parametrize("bad", ["a/b", "x+", "#"])
def test_model_name_with_topic_characters_rejected(tmp_path, model_file, bad):
    cfg = write(tmp_path, f"""
    models:
      '{bad}':
        path: {model_file}
    cameras:
      cam1:
        source: 0
        model: '{bad}'
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert [(e[1], e[2]) for e in errors] == [(2, f"models.{bad}")]


@pytest.mark.parametrize("bad", ["node/1", "node+", "node#1"])
def test_node_id_with_topic_characters_rejected(tmp_path, model_file, bad):
    cfg = write(tmp_path, f"node_id: '{bad}'\n" + minimal(model_file))
    proc = check(cfg)
    assert proc.returncode == 2
    assert [(e[1], e[2]) for e in error_lines(proc)] == [(1, "node_id")]


@pytest.mark.parametrize("bad", ["a/+/b", "#", "/edged", "edged/"])
def test_topic_prefix_rejected(tmp_path, model_file, bad):
    cfg = write(tmp_path, minimal(model_file) + f"mqtt:\n  topic_prefix: '{bad}'\n")
    proc = check(cfg)
    assert proc.returncode == 2
    assert [(e[1], e[2]) for e in error_lines(proc)] == [(8, "mqtt.topic_prefix")]


def test_bad_camera_name_is_named(tmp_path, model_file):
    cfg = write(tmp_path, f"""
    models:
      default:
        path: {model_file}
    cameras:
      good:
        source: 0
      'bad/name':
        source: 1
    """)
    proc = check(cfg)
    assert proc.returncode == 2
    assert "bad/name" in proc.stderr


# --- paths -----------------------------------------------------------------------------------


def test_relative_paths_resolved_against_config_folder_not_cwd(tmp_path):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "m.tflite").write_bytes(b"x")
    (conf_dir / "labels.txt").write_text("a\n")
    cfg = write(conf_dir, """
    models:
      default:
        path: m.tflite
        labels: labels.txt
    cameras:
      file:
        source: videos/a.mp4
      dev:
        source: /dev/video2
      url:
        source: rtsp://cam/stream
      index:
        source: 0
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Relative -c from another CWD: the CLI must still find m.tflite beside the config.
    proc = check(os.path.relpath(cfg, elsewhere), cwd=elsewhere, real=True)
    assert proc.returncode == 0, proc.stderr

    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        loaded = load_config(os.path.relpath(cfg, elsewhere))
    finally:
        os.chdir(old)
    assert loaded.models["default"].path == str(conf_dir / "m.tflite")
    assert loaded.models["default"].labels == str(conf_dir / "labels.txt")
    assert loaded.cameras["file"].source == str(conf_dir / "videos" / "a.mp4")
    assert loaded.cameras["dev"].source == "/dev/video2"
    assert loaded.cameras["url"].source == "rtsp://cam/stream"
    assert loaded.cameras["index"].source == 0


def test_relative_model_not_found_when_only_in_cwd(tmp_path):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (tmp_path / "m.tflite").write_bytes(b"x")  # beside the CWD, not beside the config
    cfg = write(conf_dir,
                "models:\n  default:\n    path: m.tflite\ncameras:\n  c:\n    source: 0\n")
    proc = check(cfg, cwd=tmp_path)
    assert proc.returncode == 2
    errors = error_lines(proc)
    assert errors[0][1:3] == (3, "models.default.path")
    assert str(conf_dir / "m.tflite") in errors[0][3]


def test_config_path_with_colon(tmp_path, model_file):
    d = tmp_path / "a:b"
    d.mkdir()
    cfg = write(d, minimal(model_file) + "mqtt:\n  qos: 3\n")
    proc = edged("check-config", "-c", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{cfg}:8: mqtt.qos: Input should be 0, 1 or 2"]


def test_recursive_alias(tmp_path):
    cfg = write(tmp_path, "a: &x [*x]\n")
    proc = edged("check-config", "-c", str(cfg))
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    # Refused while reading (before validation walks it): one line, with the alias's line.
    assert proc.stderr.splitlines() == [f"{cfg}:1: an alias refers to the node it is in "
                                        "(a recursive alias)"]


def test_non_string_key_gets_its_line(tmp_path, model_file):
    cfg = write(tmp_path, minimal(model_file) + "1: x\n")
    proc = check(cfg)
    assert proc.returncode == 2
    assert [e[1] for e in error_lines(proc)] == [7]


# --- which file ------------------------------------------------------------------------------


def test_resolve_config_path(monkeypatch):
    monkeypatch.delenv("EDGED_CONFIG", raising=False)
    assert resolve_config_path(None) == DEFAULT_CONFIG == "/etc/edged/config.yaml"
    assert resolve_config_path("a.yaml") == "a.yaml"
    monkeypatch.setenv("EDGED_CONFIG", "/env/edged.yaml")
    assert resolve_config_path(None) == "/env/edged.yaml"
    assert resolve_config_path("cli.yaml") == "cli.yaml"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGED_CONFIG"}
    env.update(extra)
    return env


def test_cli_uses_edged_config_env(tmp_path, model_file):
    cfg = write(tmp_path, minimal(model_file))
    proc = subprocess.run([sys.executable, "-m", "edged", "check-config"], capture_output=True,
                          text=True, timeout=60, env=_env(EDGED_CONFIG=str(cfg)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{cfg}: ok"


def test_cli_flag_wins_over_env(tmp_path, model_file):
    good = write(tmp_path, minimal(model_file), "good.yaml")
    bad = write(tmp_path, "camras: 1\n", "bad.yaml")
    proc = subprocess.run([sys.executable, "-m", "edged", "check-config", "-c", str(good)],
                          capture_output=True, text=True, timeout=60,
                          env=_env(EDGED_CONFIG=str(bad)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{good}: ok"
    proc = subprocess.run([sys.executable, "-m", "edged", "check-config", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60,
                          env=_env(EDGED_CONFIG=str(good)))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and str(good) not in proc.stderr


def test_cli_env_pointing_at_missing_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    proc = subprocess.run([sys.executable, "-m", "edged", "check-config"], capture_output=True,
                          text=True, timeout=60, env=_env(EDGED_CONFIG=str(missing)))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{missing}: cannot read config: No such file or directory"]


def test_cross_section_rules_hold_for_model_validate_too():
    """The rules between sections live in the pydantic model, not only in load_config."""
    from pydantic import ValidationError

    from edged.config import Config

    with pytest.raises(ValidationError, match=r"cameras\.c\.model: no model named 'nope'"):
        Config.model_validate({"models": {"m": {"path": "x.tflite"}},
                               "cameras": {"c": {"source": 0, "model": "nope"}}})
    with pytest.raises(ValidationError, match=r"web\.enabled: needs metrics\.enabled"):
        Config.model_validate({"models": {"m": {"path": "x.tflite"}},
                               "cameras": {"c": {"source": 0, "model": "m"}},
                               "web": {"enabled": True}, "metrics": {"enabled": False}})
