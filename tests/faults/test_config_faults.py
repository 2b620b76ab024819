"""Fault injection: config files of any shape, at check-config and on SIGHUP of a running
daemon. One line per error with its line, never a traceback; the daemon keeps its config."""

from __future__ import annotations

import copy
import re
import signal
from pathlib import Path

import pytest

from edged.config import MAX_CONFIG_BYTES
from tests.conftest import DEMO, demo_config, edged, start_edged, write_config

BASE = (f"models:\n  default:\n    path: {DEMO / 'model.tflite'}\n"
        f"cameras:\n  cam1:\n    source: /dev/video0\n")  # 6 lines: the fault is on line 7


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _deep_block(levels: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(levels)) + "  " * levels + "x: 1\n"


CASES = {
    # name: (bytes of the file, expected line, a regex the one line must match)
    "deep_flow_lists": ((BASE + "extra: " + "[" * 10000 + "]" * 10000 + "\n").encode(), 7,
                        r"nest"),
    "deep_flow_maps": ((BASE + "extra: " + "{a: " * 10000 + "1" + "}" * 10000 + "\n").encode(),
                       7, r"nested deeper than 64 levels"),
    # the 65th mapping (the root is the 1st) starts at k64, on line 7 + 64
    "deep_block_maps": ((BASE + _deep_block(300)).encode(), 71, r"nested deeper than 64"),
    "huge_file": ((BASE + "#" * (MAX_CONFIG_BYTES + 10) + "\n").encode(), None,
                  r"config file larger than 1024 KiB \(the limit\)"),
    "latin1_on_line_9": ((BASE + "node_id: a\nlog_level: info\n# caf\u00e9\n").encode("latin-1"),
                         9, r"not a UTF-8 text file \(byte 0xe9 at column 6\); save it as UTF-8"),
    "utf16": (BASE.encode("utf-16"), 1, r"not a UTF-8 text file \(it is UTF-16\)"),
    "nul_character": ((BASE + "node_id: a\x00b\n").encode(), 7, r"character U\+0000"),
    "billion_laughs": ((BASE + "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{n}: &{n} [{','.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh"))
    ).encode(), None, r"more than 100000 values"),
    "recursive_alias": ((BASE + "x: &x [*x]\n").encode(), 7, r"recursive alias"),
    "int_of_6000_digits": ((BASE + "node_id: " + "9" * 6000 + "\n").encode(), 7,
                           r"cannot read this value: Exceeds the limit \(4300 digits\)"),
    "two_documents": ((BASE + "---\nnode_id: b\n").encode(), 7, r"invalid YAML"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_config_one_line_no_traceback(tmp_path: Path, name: str):
    data, line, pattern = CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    proc = edged("check-config", "-c", str(path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    prefix = f"{path}:{line}: " if line is not None else f"{path}"
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert len(lines[0]) < 400


def test_ten_thousand_unknown_keys_are_capped(tmp_path: Path):
    path = tmp_path / "many.yaml"
    path.write_text(BASE + "".join(f"k{i}: 1\n" for i in range(10000)))
    proc = edged("check-config", "-c", str(path), timeout=60)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 51 and lines[0] == f"{path}:7: k0: unknown key"
    assert lines[-1] == f"{path}: ... and 9950 more errors"


@pytest.mark.parametrize("where, yaml_text, line, key", [
    ("node_id", "node_id: line.1\n", 7, "node_id"),
    ("camera", BASE.replace("cam1", "front.door"), 5, "cameras.front.door"),
    ("model", BASE.replace("default", "mobilenet.v2") + "    model: mobilenet.v2\n", 2,
     "models.mobilenet.v2"),
    ("space", "node_id: line 1\n", 7, "node_id"),
])
def test_names_outside_the_rule_name_the_key(tmp_path: Path, where, yaml_text, line, key):
    text = BASE + yaml_text if where in ("node_id", "space") else yaml_text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    proc = edged("check-config", "-c", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{line}: {key}: use only letters, digits, '_' and '-'"), first
    assert "e.g. '" in first  # a one-line hint with a name that passes


def test_sighup_with_hostile_configs_keeps_running_and_results_flowing(tmp_path, broker,
                                                                         subscriber):
    data = demo_config(broker.port, loop=True, realtime=True)
    path = write_config(tmp_path / "c.yaml", data)
    good_text = path.read_text()
    proc = start_edged("run", "-c", str(path))

    def seqs() -> list[int]:
        return [m.json["seq"] for m in subscriber.on("/conveyor/result")]

    hostile = {
        "deep": (good_text + "extra: " + "[" * 10000 + "]" * 10000 + "\n").encode(),
        "deep_block": (good_text + _deep_block(300)).encode(),
        "huge": good_text.encode() + b"#" * (MAX_CONFIG_BYTES + 1),
        "latin1": (good_text + "# caf\u00e9\n").encode("latin-1"),
        "laughs": CASES["billion_laughs"][0],
        "dotted": good_text.replace("test-node", "test.node").encode(),
    }
    try:
        assert subscriber.wait_for(lambda: len(seqs()) >= 5, 30)
        for _name, raw in hostile.items():
            path.write_bytes(raw)
            proc.send_signal(signal.SIGHUP)
            n = len(seqs())
            assert subscriber.wait_for(lambda: len(seqs()) >= n + 5, 20), _name
            assert proc.poll() is None, f"{_name}: the daemon must keep running"
            assert rss_mb(proc.pid) < 400, _name
        # And a good config still applies afterwards.
        good = copy.deepcopy(data)
        good["cameras"]["second"] = {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                                     "realtime": True}
        write_config(path, good)
        proc.send_signal(signal.SIGHUP)
        assert subscriber.wait_for(lambda: subscriber.on("/second/result"), 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "RecursionError" not in err
    # (The log's repeat filter shows the same closing line once a minute: at least once here.)
    assert "reload: invalid config; still running on the previous one" in err
    for pattern in (r":\d+: .*nest", r":\d+: nested deeper than 64 levels",
                    r"config file larger than 1024 KiB", r"not a UTF-8 text file \(byte 0xe9",
                    r"more than 100000 values", r"node_id: use only letters"):
        assert re.search(r"reload: " + re.escape(str(path)) + r".*" + pattern, err), pattern
    assert "reload: applied (cameras +second)" in err
    got = seqs()
    assert got == list(range(len(got))), "seq must neither gap nor restart across reloads"
