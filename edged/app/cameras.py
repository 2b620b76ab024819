"""The camera set: the running cameras by name, each with its model and its seq tickets.

Everything that needs a camera (the live view, commands, state, Home Assistant, snapshots,
health) reads it here at the moment it needs it, so a camera that a reload adds, restarts or
moves to another model is seen by all of them at once. The tickets (publish-order numbers)
live for the daemon's life: a camera restarted by a reload goes on where it was.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

from edged.capture.camera import Camera
from edged.config import CameraConfig, CaptureRulesConfig, SmoothingConfig, SnapshotConfig
from edged.frame import Frame, split_subject, subject
from edged.model.loaded import LoadedModel


class CameraSet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, Camera] = {}
        self._models: dict[str, LoadedModel] = {}
        self._tickets: dict[str, Iterator[int]] = {}

    def tickets(self, name: str) -> Iterator[int]:
        with self._lock:
            return self._tickets.setdefault(name, itertools.count())

    def add(self, camera: Camera, model: LoadedModel) -> None:
        """Add a camera, or replace the one of the same name (a restart by reload)."""
        with self._lock:
            self._cameras[camera.name] = camera
            self._models[camera.name] = model

    def remove(self, name: str) -> Camera | None:
        with self._lock:
            self._models.pop(name, None)
            return self._cameras.pop(name, None)

    def set_model(self, name: str, model: LoadedModel) -> None:
        with self._lock:
            if name in self._cameras:
                self._models[name] = model

    # --- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> Camera | None:
        with self._lock:
            return self._cameras.get(name)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._cameras

    def __iter__(self) -> Iterator[Camera]:
        with self._lock:
            return iter(list(self._cameras.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._cameras)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def config(self, name: str) -> CameraConfig | None:
        camera = self.get(name)
        return camera.cfg if camera is not None else None

    def subjects(self) -> list[str]:
        """Everything with its own results and state: each camera without regions, and
        `camera/region` for each region of a camera with regions."""
        out = []
        for camera in self:
            if camera.cfg.regions:
                out += [subject(camera.name, r) for r in camera.cfg.regions]
            else:
                out.append(camera.name)
        return out

    def _setting(self, name: str, key: str, whole_camera: bool = True) -> Any:  # noqa: ANN401
        """Setting `key` of a camera or `camera/region` (the region's override, else the
        camera's); None for a subject edged does not have. `whole_camera=False`: a camera
        with regions has none of its own (only its regions do)."""
        camera, region = split_subject(name)
        cfg = self.config(camera)
        if cfg is None:
            return None
        if region is None:
            return None if cfg.regions and not whole_camera else getattr(cfg, key)
        rcfg = cfg.regions.get(region)
        if rcfg is None:
            return None
        return getattr(rcfg, key) or getattr(cfg, key)

    def smoothing(self, name: str) -> SmoothingConfig | None:
        """Smoothing of a subject; a camera with regions has state only per region."""
        return self._setting(name, "smoothing", whole_camera=False)

    def snapshot(self, name: str) -> SnapshotConfig | None:
        return self._setting(name, "snapshot")

    def capture_rules(self, name: str) -> CaptureRulesConfig | None:
        return self._setting(name, "capture")

    def model_of(self, name: str) -> LoadedModel | None:
        with self._lock:
            return self._models.get(name)

    def models(self) -> set[str]:
        with self._lock:
            return {m.name for m in self._models.values()}

    def last_frame(self, name: str) -> Frame | None:
        camera = self.get(name)
        return camera.last_frame if camera is not None else None
