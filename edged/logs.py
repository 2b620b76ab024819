"""Logging set-up: journald-friendly when run by systemd."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str = "info") -> None:
    # journald stamps every line itself; a second timestamp is noise there.
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
