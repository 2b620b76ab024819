"""Keep the TFLite runtime's native chatter ("INFO: Created ... XNNPACK delegate") off stderr.

The runtime writes straight to file descriptor 2 while an interpreter is built, below Python's
logging; users asked for one clear line per problem. Anything else it writes is passed on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

_NOISE = ("INFO: Created TensorFlow Lite", "INFO: Initialized TensorFlow Lite runtime")


@contextlib.contextmanager
def quiet_native_stderr(discard: bool = False) -> Iterator[None]:
    """Capture fd 2 for the block; pass on what is not known noise (nothing if `discard`)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded, pytest capture): nothing to do
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith(_NOISE)
            and not line.startswith("ERROR: ")]  # ERROR lines are raised as exceptions too
    if kept and not discard:
        print("\n".join(kept), file=sys.stderr)


def quiet_native_libraries(debug: bool = False) -> None:
    """Ask OpenCV and its FFmpeg to keep their own messages to errors (or to all, in debug).

    Called from the CLI before OpenCV is used; FFmpeg's "moov atom not found" and the like
    would otherwise stand beside edged's own one-line error.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "DEBUG" if debug else "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "32" if debug else "-8")
