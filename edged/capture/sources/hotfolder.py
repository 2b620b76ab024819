"""A hot folder: images dropped into a folder while edged runs, each read once.

QC stations write one image per part into a folder. The folder is polled (os.scandir, cheap
and works on network shares where inotify does not); a file is read only once its size and
modification time have stayed the same for `settle_s`, so a half-written file is never read
(writers that write `.name.jpg` or `name.jpg.part` and rename are picked up at the rename, as
hidden and non-image names are ignored). With `done_dir`, each file is moved there once its
result has been handed to MQTT; without it, files stay and are remembered as read for as long
as they stay in the folder (a file rewritten under the same name is read again).

A file that cannot give a result (empty once settled, unreadable, over max_pixels, truncated or
corrupt) is moved to `failed_dir` with a log line and dropped, so that no file can block the
folder or, being read again at every start, crash-loop the daemon. Files are read by Python and
decoded from memory (edged.capture.imagedecode); names are reported in safe_name form.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable

import logging

import numpy as np

from edged.capture.imagedecode import ImageRejected, read_image_file, safe_name
from edged.capture.readahead import ReadAhead
from edged.capture.sources.base import IDLE, Source
from edged.capture.sources.failures import SourceFailure
from edged.capture.sources.images import IMAGE_EXTENSIONS, ImagesCameraConfig

log = logging.getLogger(__name__)

_POLL_S = 0.1

Signature = tuple[int, int]  # (size, mtime_ns)


class HotFolderSource(Source):
    key = "hotfolder"
    config_model = ImagesCameraConfig  # `type: images` with `watch: true`
    selectable = False

    cfg: ImagesCameraConfig

    def __init__(self, cfg, clock: Callable[[], float] = time.monotonic) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._clock = clock
        self._folder = str(cfg.source)
        self._done_dir: str | None = None
        self._failed_dir = ""
        self._names: dict[str, str] = {}  # shown name -> name on disk, for files in flight
        self._unreadable = False  # listing the folder failed (logged once until it works)
        self._seen: dict[str, Signature] = {}  # read; only names still in the folder
        self._settling: dict[str, tuple[Signature, float]] = {}  # signature, since when
        self._ready: list[str] = []
        # The next files are read and decoded while this one is classified (in file order).
        # (name, shown name, the decode target's size when it was read)
        self._ahead: ReadAhead[tuple[str, str, tuple[int, int] | None], np.ndarray] = \
            ReadAhead(self._load, name="read-ahead")
        self._lock = threading.Lock()  # done() runs on the publisher's thread

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return isinstance(source, str) and os.path.isdir(source)

    def open(self) -> None:
        if not os.path.isdir(self._folder):
            raise SourceFailure(f"{self._folder}: no such folder to watch", "not_found")
        if self.cfg.done_dir is not None:
            done = self.cfg.done_dir
            self._done_dir = done if os.path.isabs(done) else os.path.join(self._folder, done)
            try:
                os.makedirs(self._done_dir, exist_ok=True)
            except OSError as exc:
                raise SourceFailure(f"done_dir {self._done_dir}: cannot create: "
                                    f"{exc.strerror or exc}", "error") from None
        self._failed_dir = self._failed_path()

    def _failed_path(self) -> str:
        failed = self.cfg.failed_dir
        if failed is None:  # beside done_dir, else inside the watched folder
            base = os.path.dirname(self._done_dir.rstrip(os.sep)) if self._done_dir else ""
            return os.path.join(base or self._folder, "failed")
        return failed if os.path.isabs(failed) else os.path.join(self._folder, failed)

    def _scan(self) -> None:
        now = self._clock()
        present: dict[str, Signature] = {}
        with os.scandir(self._folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:  # removed while listing
                    continue
                present[name] = (st.st_size, st.st_mtime_ns)
        with self._lock:
            self._seen = {n: s for n, s in self._seen.items() if n in present}
            # A frame dropped before its result (too old) never calls done(): forget it here.
            self._names = {k: n for k, n in self._names.items() if n in present}
        self._settling = {n: v for n, v in self._settling.items() if n in present}
        queued = set(self._ready)
        fresh = []
        for name, sig in present.items():
            if name in queued or self._seen.get(name) == sig:
                continue
            old = self._settling.get(name)
            if old is None or old[0] != sig:
                self._settling[name] = (sig, now)
            elif now - old[1] >= self.cfg.settle_s:  # empty ones too: they go to failed
                del self._settling[name]
                fresh.append(name)
        self._ready.extend(sorted(fresh))

    def read(self):  # noqa: ANN201 - (image, name) | IDLE
        if not self._ready and not self._ahead:
            try:
                self._scan()
            except OSError as exc:  # the folder itself went away or became unreadable
                if not self._unreadable:
                    log.warning("hot folder %s: cannot list: %s; retrying", self._folder,
                                exc.strerror or exc)
                self._unreadable = True
                time.sleep(_POLL_S * 10)
                return IDLE
            if self._unreadable:
                log.info("hot folder %s: readable again", self._folder)
                self._unreadable = False
            if not self._ready:
                time.sleep(_POLL_S)
                return IDLE
        while self._ready and self._ahead.room > 0:
            name = self._ready.pop(0)
            try:
                st = os.stat(os.path.join(self._folder, name))
            except OSError:
                continue  # gone before it was read
            with self._lock:
                self._seen[name] = (st.st_size, st.st_mtime_ns)
            self._ahead.submit((name, safe_name(name), self.decode_target.hw))
        if not self._ahead:
            return IDLE
        key, loading = self._ahead.take()
        name, shown, hw = key
        try:
            if hw != self.decode_target.hw:  # a reload changed the model or regions since
                loading.cancel()
                image: np.ndarray = self._load((name, shown, self.decode_target.hw))
            else:
                image = loading.result()
        except ImageRejected as exc:
            exc.args = (f"hot folder {self._folder}: {exc}{self._fail(name, str(exc))}",)
            exc.logged = True
            raise
        with self._lock:
            self._names[shown] = name
        return image, shown

    def _load(self, key: tuple[str, str, tuple[int, int] | None]) -> np.ndarray:
        """Read and decode one file (on a read-ahead thread) for the decode target as it
        was when the file was queued."""
        name, shown, hw = key
        path = os.path.join(self._folder, name)
        try:
            if os.stat(path).st_size == 0:
                raise ImageRejected(f"{shown}: empty file")
            return read_image_file(path, self.cfg.max_pixels, shown,
                                   self.decode_target.at(hw), self.cfg.decode_scale)
        except OSError as exc:
            raise ImageRejected(f"{shown}: cannot read: {exc.strerror or exc}") from None

    def _fail(self, name: str, why: str) -> str:
        """Move a file that gave no result to failed_dir, with a log line; what to add to
        its message."""
        try:
            os.makedirs(self._failed_dir, exist_ok=True)
            shutil.move(os.path.join(self._folder, name), os.path.join(self._failed_dir, name))
        except OSError as exc:  # it stays, remembered as read while it stays unchanged
            where = f"; cannot move it to {self._failed_dir}: {exc.strerror or exc}"
        else:
            with self._lock:
                self._seen.pop(name, None)
            where = f"; moved to {self._failed_dir}"
        log.warning("hot folder %s: %s%s", self._folder, why, where)
        return where

    @property
    def moves_done(self) -> bool:
        return self._done_dir is not None

    def done(self, shown: str) -> None:
        """The file's result was handed on: move it to done_dir (if set)."""
        with self._lock:
            name = self._names.pop(shown, shown)
        if self._done_dir is None:
            return
        src = os.path.join(self._folder, name)
        try:
            shutil.move(src, os.path.join(self._done_dir, name))
        except OSError:
            return  # gone or unmovable: it stays remembered while it stays in the folder
        with self._lock:
            self._seen.pop(name, None)

    def describe(self) -> str:
        return f"{self._folder} (watched)"

    def owned_by(self, camera: str) -> None:
        self._ahead.name = f"read-ahead-{camera}"

    def close(self) -> None:
        dropped = self._ahead.close()
        with self._lock:  # files read ahead but not handed on: read again after a reopen
            for name, _, _ in dropped:
                self._seen.pop(name, None)
        self._ready = []
        self._settling = {}
        with self._lock:
            self._names = {}
