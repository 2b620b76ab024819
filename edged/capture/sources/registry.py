"""The source kinds, by `type`: each file of this package registers its Source class, which
names its config model. The config reads the models from here (a discriminated union built
from the registry), so a new kind is one new file in this folder."""

from __future__ import annotations

import os

from edged.capture.sources.base import SOURCES, Source
from edged.config.camera import CameraConfig
from edged.errors import SourceError
from edged.plugins import import_all


def _kinds() -> dict[str, type[Source]]:
    import_all("edged.capture.sources")  # each file registers its kind
    return SOURCES


def _selectable() -> list[type[Source]]:
    """The kinds a `type` names, in the order `type` is inferred."""
    return sorted((c for c in _kinds().values() if c.selectable), key=lambda c: c.priority)


def config_models() -> dict[str, type[CameraConfig]]:
    """type -> its config model, in the order `type` is inferred."""
    return {c.key: c.config_model for c in _selectable()}


def infer_kind(source: str | int) -> str | None:
    """The kind that handles `source` when no `type` is given: the first that accepts it."""
    return next((c.key for c in _selectable() if c.accepts(source)), None)


def source_class(cfg: CameraConfig) -> type[Source]:
    kinds = _kinds()
    key = cfg.type or infer_kind(cfg.source)
    if key is None:
        raise SourceError(f"no source kind handles {cfg.source!r}")
    if getattr(cfg, "watch", False):
        if key != "images" or not isinstance(cfg.source, str) or os.path.isfile(cfg.source):
            raise SourceError("watch: true needs an image folder as source")
        key = "hotfolder"
    return kinds[key]
