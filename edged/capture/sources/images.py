"""A folder of images, or a glob, read in sorted order.

Each file is read by Python and decoded within the camera's `max_pixels` budget
(edged.capture.imagedecode); a bad file is a drop, never a crash, and its name is reported in
safe_name form."""

from __future__ import annotations

import glob
import os

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edged.capture.imagedecode import ImageRejected, JpegSettings, read_image_file, safe_name
from edged.capture.readahead import ReadAhead
from edged.config.camera import CameraConfig, is_path_source
from edged.errors import SourceError
from edged.capture.sources.base import Source

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def list_images(source: str) -> list[str]:
    if os.path.isdir(source):
        names = [os.path.join(source, n) for n in os.listdir(source)]
    else:
        names = glob.glob(source)
    return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(n))


class ImagesCameraConfig(CameraConfig, JpegSettings):
    """An image folder or glob; with `watch: true` a hot folder (hotfolder.py)."""

    type: Literal["images"] = "images"
    loop: bool = Field(False, description="Files: start over at the end.")
    watch: bool = Field(
        False, description="Image folders: keep watching for new images (a hot folder)."
    )
    done_dir: str | None = Field(
        None,
        description="Hot folder: move each file here once its result is handed to MQTT "
        "(relative to the watched folder).",
    )
    settle_s: float = Field(
        0.5, ge=0, description="Hot folder: a file is read once its size and time are unchanged "
        "this long (so half-written files are not read).",
    )
    failed_dir: str | None = Field(
        None,
        description="Hot folder: move files that are empty, too large or cannot be decoded "
        "here (relative to the watched folder); default `failed` beside done_dir, or inside "
        "the watched folder without done_dir.",
    )

    @model_validator(mode="after")
    def _hot_folder(self) -> ImagesCameraConfig:
        if self.done_dir is not None and not self.watch:
            raise ValueError("done_dir needs watch: true")
        if self.failed_dir is not None and not self.watch:
            raise ValueError("failed_dir needs watch: true")
        return self


class ImageFolderSource(Source):
    key = "images"
    config_model = ImagesCameraConfig
    priority = 50  # a folder or glob, before `video` takes any path

    cfg: ImagesCameraConfig

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._files: list[str] = []
        self._pos = 0
        # (path, the decode target's size when it was read)
        self._ahead: ReadAhead[tuple[str, tuple[int, int] | None], np.ndarray] = ReadAhead(
            self._load, name="read-ahead")

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return is_path_source(source) and (os.path.isdir(str(source)) or glob.has_magic(str(source)))

    def open(self) -> None:
        self._ahead.close()
        self._files = list_images(str(self.cfg.source))
        if not self._files:
            raise SourceError(f"{self.cfg.source}: no images found")
        self._pos = 0

    def _load(self, key: tuple[str, tuple[int, int] | None]) -> np.ndarray:
        path, hw = key
        return read_image_file(path, self.cfg.max_pixels, None, self.decode_target.at(hw),
                               self.cfg.decode_scale)

    def read(self) -> tuple[np.ndarray, str | None] | None:
        # The next files are read and decoded while this one is classified (in order).
        while self._ahead.room > 0 and self._files:
            if self._pos >= len(self._files):
                if not self.cfg.loop:
                    break
                self._pos = 0
            self._ahead.submit((self._files[self._pos], self.decode_target.hw))
            self._pos += 1
        if not self._ahead:
            return None
        (path, hw), loading = self._ahead.take()
        # An unreadable image is skipped, not fatal: raise so the camera counts it.
        try:
            if hw != self.decode_target.hw:  # a reload changed the model or regions since
                loading.cancel()
                image = self._load((path, self.decode_target.hw))
            else:
                image = loading.result()
        except OSError as exc:
            raise ImageRejected(f"{safe_name(path)}: cannot read: "
                                f"{exc.strerror or exc}") from None
        return image, safe_name(os.path.basename(path))

    def owned_by(self, camera: str) -> None:
        self._ahead.name = f"read-ahead-{camera}"

    def close(self) -> None:
        self._ahead.close()
        self._files = []
