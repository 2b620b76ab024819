"""Logging set-up: journald-friendly when run by systemd, JSON for other collectors; secrets
redacted and repeated warnings rate-limited in every format."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import TextIO

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


# syslog(3) levels, which journald reads from a "<N>" prefix on each line of a stream.
_SYSLOG_LEVEL = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                 (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    return next((prio for level, prio in _SYSLOG_LEVEL if levelno >= level), 7)


class JournalFormatter(RedactingFormatter):
    """For stderr connected to journald: every line (a traceback's too) starts with `<N>`, so
    `journalctl -p warning` finds warnings and errors; journald adds the timestamp itself."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def journal_stream(environ: Mapping[str, str], fd: int) -> bool:
    """True when `fd` is the stream systemd connected to journald ($JOURNAL_STREAM holds its
    device:inode; a child whose stderr was redirected elsewhere must not print prefixes)."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def print_errors(lines: list[str], stream: TextIO | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
    """The CLI's one-line errors (before logging is set up), at error priority when stderr is
    the journal: `journalctl -p err` shows why a unit failed to start."""
    stream = stream if stream is not None else sys.stderr
    try:
        journal = journal_stream(environ if environ is not None else os.environ, stream.fileno())
    except (AttributeError, OSError, ValueError):
        journal = False
    prefix = "<3>" if journal else ""
    for line in lines:
        print(prefix + line, file=stream)


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


def setup_logging(level: str = "info", fmt: str = "text",
                  environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
    stream = stream if stream is not None else sys.stderr
    environ = environ if environ is not None else os.environ
    handler = logging.StreamHandler(stream)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif journal_stream(environ, fd):
        # journald stamps every line itself; a second timestamp is noise there.
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    elif environ.get("JOURNAL_STREAM"):
        # Started by systemd, stderr elsewhere (e.g. a file): no prefixes, no timestamp.
        handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
