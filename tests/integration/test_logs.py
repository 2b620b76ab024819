"""Logs for journald and other collectors: formats, redaction, rate limiting."""

from __future__ import annotations

import json
import logging
import os
import re

from edged.service.logs import JsonFormatter, RedactingFormatter, redact
from edged.service.ratelimit import RepeatFilter
from tests.conftest import demo_config, edged, write_config


def test_redact_removes_credentials():
    assert redact("rtsp://admin:hunter2@10.0.0.5/live") == "rtsp://***@10.0.0.5/live"
    assert redact("mqtt password=s3cret; next") == "mqtt password=***; next"
    assert redact('{"token": "abc.def", "x": 1}') == '{"token": "***", "x": 1}'
    assert redact("api_key: K123 ok") == "api_key: *** ok"
    assert redact("nothing secret at 12:30 on http://host/x") == \
        "nothing secret at 12:30 on http://host/x"


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("edged.capture.camera", level, __file__, 1, msg, args, None)


def test_formatters_redact_message_and_exception():
    rec = record("camera %s: cannot open", "rtsp://u:pw@cam/1")
    assert "pw" not in RedactingFormatter("%(message)s").format(rec)
    try:
        raise ValueError("password=oops")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["msg"] == "camera rtsp://***@cam/1: cannot open"
    assert entry["level"] == "warning" and entry["logger"] == "edged.capture.camera"
    assert "password=***" in entry["exc"] and "oops" not in entry["exc"]


def test_repeat_filter_shows_once_per_window_then_counts():
    now = [0.0]
    f = RepeatFilter(every_s=60, clock=lambda: now[0])
    assert f.filter(record("broker down"))
    assert [f.filter(record("broker down")) for _ in range(5)] == [False] * 5
    assert f.filter(record("other"))  # a different message is not held back
    assert f.filter(record("info", level=logging.INFO)) and f.filter(record("info",
                                                                            level=logging.INFO))
    now[0] = 61.0
    again = record("broker down")
    assert f.filter(again)
    assert again.getMessage() == "broker down (5 repeats suppressed)"


def test_run_with_json_logs_and_journald_style(tmp_path, broker):
    cfg = write_config(tmp_path / "c.yaml", demo_config(broker.port))
    proc = edged("run", "-c", str(cfg), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(e) for e in lines)
    assert any(e["msg"] == "stopped" for e in lines)

    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    proc = edged("run", "-c", str(cfg), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ", x)
                         for x in lines), lines


def _journal_env(stream_path) -> dict:  # noqa: ANN001
    """$JOURNAL_STREAM naming the very file stderr goes to, as systemd names its socket."""
    st = os.stat(stream_path)
    return {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_each_line_carries_its_syslog_priority_when_stderr_is_the_journal(tmp_path, broker):
    """journald reads `<N>` at the start of each line as its priority: warnings and errors
    are then found by `journalctl -p warning` (tests/system checks it with a real journald)."""
    import subprocess
    import sys

    data = demo_config(broker.port)
    data["models"]["default"].pop("labels")  # a warning: no labels file
    cfg = write_config(tmp_path / "c.yaml", data)
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "edged", "run", "-c", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=120,
                              env=_journal_env(err_path))
    assert proc.returncode == 0
    lines = [x for x in err_path.read_text().splitlines() if x.strip()]
    ours = [x for x in lines if re.match(r"^<\d>", x)]
    assert any(x.startswith("<6>INFO edged") for x in ours), lines
    assert any(x.startswith("<4>WARNING edged.model.loaded:") and "no labels file" in x
               for x in ours), lines
    # Only the native libraries' own chatter (written to fd 2 directly) has no prefix.
    assert all(re.match(r"^<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) ", x) for x in ours)

    # A config error at start, printed before logging is set up, is an error too.
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("workers: 2", "workers: 0"))
    with open(err_path, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "edged", "run", "-c", str(bad)],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=60,
                              env=_journal_env(err_path))
    assert proc.returncode == 2
    text = err_path.read_text()
    assert text.startswith("<3>") and "workers" in text, text


def test_multiline_records_prefix_every_line():
    from edged.service.logs import JournalFormatter, syslog_priority

    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("camera failed", level=logging.ERROR)
        rec.exc_info = sys.exc_info()
    lines = JournalFormatter("%(levelname)s %(message)s").format(rec).split("\n")
    assert len(lines) > 3 and all(x.startswith("<3>") for x in lines)
    assert [syslog_priority(n) for n in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
