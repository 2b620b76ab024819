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
