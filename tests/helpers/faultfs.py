"""Real ways to make writes fail: a tiny tmpfs that fills up, read-only bind mounts of a file or
a folder, and (where mounting is not permitted) RLIMIT_FSIZE. Every mount is undone by close()."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
from pathlib import Path


def _run(*cmd: str) -> str | None:
    """None on success, else the command's one-line complaint."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")


class Mounts:
    def __init__(self) -> None:
        self._mounted: list[Path] = []

    def tmpfs(self, where: Path, size: str) -> str | None:
        """Mount a tmpfs of `size` on `where`; None, or why it is not possible here."""
        where.mkdir(parents=True, exist_ok=True)
        why = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        if why is None:
            self._mounted.append(where)
        return why

    def read_only(self, path: Path) -> str | None:
        """Bind `path` (file or folder) onto itself read-only: even root cannot write it."""
        why = _run("mount", "--bind", str(path), str(path))
        if why is not None:
            return why
        self._mounted.append(path)
        return _run("mount", "-o", "remount,ro,bind", str(path))

    def undo(self, path: Path) -> None:
        if path in self._mounted:
            self._mounted.remove(path)
            _run("umount", "-l", str(path))

    def close(self) -> None:
        for path in reversed(self._mounted):
            _run("umount", "-l", str(path))
        self._mounted.clear()


def fill(folder: Path, leave: int) -> Path:
    """Fill the filesystem of `folder` until ENOSPC, then give back `leave` bytes."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[:len(chunk) // 2]  # the last blocks, down to the byte
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


class FileSizeLimit:
    """RLIMIT_FSIZE for this process: writes past `limit` bytes in any file fail with EFBIG
    (Python ignores SIGXFSZ). Only used where no tmpfs can be mounted."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._old = resource.getrlimit(resource.RLIMIT_FSIZE)

    def __enter__(self) -> FileSizeLimit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (self._limit, self._old[1]))
        return self

    def lift(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self._old)

    def __exit__(self, *exc: object) -> None:
        self.lift()


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
