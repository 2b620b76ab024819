"""Logging set-up: journald-friendly when run by systemd, JSON for other collectors; secrets
redacted and repeated warnings rate-limited in every format."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

from edged.service.ratelimit import RepeatFilter
from edged.capture.sources.url import redact as redact_url

# password=..., "password": "...", token ... (URL credentials: sources.url.redact)
_SECRET_VALUES = re.compile(
    r"""(?i)(["']?\b(?:password|passwd|pass|secret|token|api_key|apikey)\b["']?\s*[:=]\s*)"""
    r"""(["'])?([^\s"',;}]+)(["'])?""")


def redact(text: str) -> str:
    """Remove credentials from a log line."""
    text = redact_url(text)
    return _SECRET_VALUES.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}***{m.group(4) or ''}",
                              text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "msg": redact(record.getMessage()), "thread": record.threadName}
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        # journald stamps every line itself; a second timestamp is noise there.
        handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
