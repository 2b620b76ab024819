"""What a config reload changes: pure functions over two validated configs.

The daemon applies the result (Daemon.reload); keeping the comparison here lets tests check
every case without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.config import CameraConfig, Config


@dataclass(frozen=True)
class ConfigDiff:
    cameras_added: tuple[str, ...] = ()
    cameras_removed: tuple[str, ...] = ()
    cameras_restarted: tuple[str, ...] = ()  # own settings changed: reopen the source
    cameras_rewired: tuple[str, ...] = ()  # only their model changed: move to the new workers
    models_added: tuple[str, ...] = ()  # newly used by an enabled camera
    models_removed: tuple[str, ...] = ()  # no enabled camera uses them any more
    models_changed: tuple[str, ...] = ()  # used before and after, settings or file changed
    mqtt_changed: bool = False  # broker, topics or node id: reconnect
    metrics_changed: bool = False  # listener moved
    log_level_changed: bool = False

    @property
    def empty(self) -> bool:
        return not any((self.cameras_added, self.cameras_removed, self.cameras_restarted,
                        self.cameras_rewired, self.models_added, self.models_removed,
                        self.models_changed, self.mqtt_changed, self.metrics_changed,
                        self.log_level_changed))

    def summary(self) -> str:
        """One line for the log, e.g. 'cameras +door -gate ~yard; models ~default'."""
        parts = []
        cams = ([f"+{c}" for c in self.cameras_added] + [f"-{c}" for c in self.cameras_removed]
                + [f"~{c}" for c in self.cameras_restarted + self.cameras_rewired])
        if cams:
            parts.append("cameras " + " ".join(cams))
        models = ([f"+{m}" for m in self.models_added] + [f"-{m}" for m in self.models_removed]
                  + [f"~{m}" for m in self.models_changed])
        if models:
            parts.append("models " + " ".join(models))
        parts += [name for name, flag in (("mqtt", self.mqtt_changed),
                                          ("metrics", self.metrics_changed),
                                          ("log_level", self.log_level_changed)) if flag]
        return "; ".join(parts) or "nothing changed"


def enabled_cameras(cfg: Config) -> dict[str, CameraConfig]:
    return {name: cam for name, cam in cfg.cameras.items() if cam.enabled}


def used_models(cfg: Config) -> set[str]:
    return {cam.model for cam in enabled_cameras(cfg).values()}


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare two validated configs (paths already resolved)."""
    old_cams, new_cams = enabled_cameras(old), enabled_cameras(new)
    old_models, new_models = used_models(old), used_models(new)
    models_changed = sorted(m for m in old_models & new_models
                            if old.models[m] != new.models[m])
    restarted, rewired = [], []
    for name in sorted(old_cams.keys() & new_cams.keys()):
        if old_cams[name] != new_cams[name]:
            restarted.append(name)
        elif new_cams[name].model in models_changed:
            rewired.append(name)
    return ConfigDiff(
        cameras_added=tuple(sorted(new_cams.keys() - old_cams.keys())),
        cameras_removed=tuple(sorted(old_cams.keys() - new_cams.keys())),
        cameras_restarted=tuple(restarted),
        cameras_rewired=tuple(rewired),
        models_added=tuple(sorted(new_models - old_models)),
        models_removed=tuple(sorted(old_models - new_models)),
        models_changed=tuple(models_changed),
        # node_id is in every topic and payload, so it counts as an MQTT setting.
        mqtt_changed=old.mqtt != new.mqtt or old.node_id != new.node_id,
        metrics_changed=old.metrics != new.metrics,
        log_level_changed=old.log_level != new.log_level,
    )
