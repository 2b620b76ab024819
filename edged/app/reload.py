"""A config reload: what changed (pure functions over two validated configs, tested without
starting anything), and applying it: the changed parts are made by the same builder as at
start and swapped in through the lifecycle, so a reloaded pipeline is the one a fresh start
would have made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edged.app.build import Builder, Pipeline, SinkPart, SourceOpener, enabled_cameras
from edged.app.cameras import CameraSet
from edged.app.health import Progress
from edged.app.lifecycle import Lifecycle
from edged.capture.camera import Camera, model_input_hw
from edged.config import CameraConfig, Config
from edged.errors import EdgedError
from edged.inference.worker import WorkerPool
from edged.mqtt.contract import retired_messages
from edged.mqtt.link import MqttLink
from edged.service.metrics import MetricsServer
from edged.web.server import LiveView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigDiff:
    cameras_added: tuple[str, ...] = ()
    cameras_removed: tuple[str, ...] = ()
    cameras_restarted: tuple[str, ...] = ()  # own settings changed: reopen the source
    cameras_rewired: tuple[str, ...] = ()  # only their model changed: move to the new workers
    # Only their regions changed: the capture goes on, the regions are swapped in at the
    # next frame (unchanged regions keep their seq and state).
    cameras_regions: tuple[str, ...] = ()
    models_added: tuple[str, ...] = ()  # newly used by an enabled camera
    models_removed: tuple[str, ...] = ()  # no enabled camera uses them any more
    models_changed: tuple[str, ...] = ()  # used before and after, settings or file changed
    mqtt_changed: bool = False  # broker, topics or node id: reconnect
    metrics_changed: bool = False  # listener moved (or the live view on it changed)
    extensions_changed: bool = False  # state, Home Assistant, commands, captures, live view
    log_level_changed: bool = False

    @property
    def empty(self) -> bool:
        return not any((self.cameras_added, self.cameras_removed, self.cameras_restarted,
                        self.cameras_rewired, self.cameras_regions, self.models_added,
                        self.models_removed, self.models_changed, self.mqtt_changed,
                        self.metrics_changed, self.extensions_changed,
                        self.log_level_changed))

    def summary(self) -> str:
        """One line for the log, e.g. 'cameras +door -gate ~yard; models ~default'."""
        parts = []
        cams = ([f"+{c}" for c in self.cameras_added] + [f"-{c}" for c in self.cameras_removed]
                + [f"~{c}" for c in self.cameras_restarted + self.cameras_rewired]
                + [f"~{c}(regions)" for c in self.cameras_regions])
        if cams:
            parts.append("cameras " + " ".join(cams))
        models = ([f"+{m}" for m in self.models_added] + [f"-{m}" for m in self.models_removed]
                  + [f"~{m}" for m in self.models_changed])
        if models:
            parts.append("models " + " ".join(models))
        parts += [name for name, flag in (("mqtt", self.mqtt_changed),
                                          ("metrics", self.metrics_changed),
                                          ("extensions", self.extensions_changed),
                                          ("log_level", self.log_level_changed)) if flag]
        return "; ".join(parts) or "nothing changed"


def used_models(cfg: Config) -> set[str]:
    return set().union(*(cam.models_used() for cam in enabled_cameras(cfg).values()))


def only_regions_changed(old: CameraConfig, new: CameraConfig) -> bool:
    return (old.regions != new.regions
            and old.model_dump(exclude={"regions"}) == new.model_dump(exclude={"regions"}))


def _extensions(cfg: Config) -> tuple:
    m = cfg.mqtt
    capturing = any(cam.capture.enabled or any(r.capture is not None and r.capture.enabled
                                               for r in cam.regions.values())
                    for cam in enabled_cameras(cfg).values())
    return m.state, m.homeassistant, m.commands, cfg.capture, capturing


def _broker(cfg: Config) -> dict:
    """The MQTT settings a new client needs (everything but the extensions' own)."""
    return cfg.mqtt.model_dump(exclude={"state", "homeassistant", "commands"})


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare two validated configs (paths already resolved)."""
    old_cams, new_cams = enabled_cameras(old), enabled_cameras(new)
    old_models, new_models = used_models(old), used_models(new)
    models_changed = sorted(m for m in old_models & new_models
                            if old.models[m] != new.models[m])
    restarted, rewired, regions = [], [], []
    for name in sorted(old_cams.keys() & new_cams.keys()):
        if only_regions_changed(old_cams[name], new_cams[name]):
            regions.append(name)  # rewired too, if one of its models changed
        elif old_cams[name] != new_cams[name]:
            restarted.append(name)
        elif new_cams[name].models_used() & set(models_changed):
            rewired.append(name)
    return ConfigDiff(
        cameras_added=tuple(sorted(new_cams.keys() - old_cams.keys())),
        cameras_removed=tuple(sorted(old_cams.keys() - new_cams.keys())),
        cameras_restarted=tuple(restarted),
        cameras_rewired=tuple(rewired),
        cameras_regions=tuple(regions),
        models_added=tuple(sorted(new_models - old_models)),
        models_removed=tuple(sorted(old_models - new_models)),
        models_changed=tuple(models_changed),
        # node_id is in every topic and payload, so it counts as an MQTT setting.
        mqtt_changed=_broker(old) != _broker(new) or old.node_id != new.node_id,
        # The live view is mounted on the listener: a new view needs a new listener.
        metrics_changed=old.metrics != new.metrics or old.web != new.web,
        extensions_changed=_extensions(old) != _extensions(new) or old.web != new.web,
        log_level_changed=old.log_level != new.log_level,
    )


class Reloader:
    """Applies a diff: prepares everything that can fail first (models, sources, the sink,
    the listener's address), then switches over, where nothing is expected to fail."""

    def __init__(self, builder: Builder, lifecycle: Lifecycle, cameras: CameraSet,
                 progress: Progress, link: MqttLink) -> None:
        self._builder = builder
        self._lifecycle = lifecycle
        self._cameras = cameras
        self._progress = progress
        self._link = link

    def apply(self, running: Pipeline, new: Config, diff: ConfigDiff) -> Pipeline:
        if not enabled_cameras(new):
            raise EdgedError("cameras: no camera is enabled")
        b = self._builder
        # --- prepare: what can fail, before anything running is touched ---------------------
        models = dict(running.models)
        fresh_pools: dict[str, WorkerPool] = {}
        for name in diff.models_added + diff.models_changed:
            models[name] = b.model(name, new)
            fresh_pools[name] = b.pool(models[name], new, running.publisher)
        for name in diff.models_removed:
            models.pop(name, None)
        pools = {**{n: p for n, p in running.pools.items() if n not in diff.models_removed},
                 **fresh_pools}
        sink = b.sink(new) if diff.mqtt_changed else None
        fresh_cams: list[Camera] = []
        try:
            for name in diff.cameras_added + diff.cameras_restarted:
                b.check_camera(name, new, models)
                camera = b.camera(name, new, pools)
                SourceOpener(camera).start()
                fresh_cams.append(camera)
            for name in diff.cameras_regions:
                b.check_camera(name, new, models)
        except EdgedError:
            for camera in fresh_cams:
                camera.stop()
            raise
        extensions = None
        if diff.extensions_changed:
            extensions = b.extensions(new, self._link, models, b.listen_address(new))
        # --- switch over --------------------------------------------------------------------
        if diff.log_level_changed:
            logging.getLogger().setLevel(new.log_level.upper())
        # Cameras that go first, so their last results still reach the broker they were for.
        by_name = {c.name: c for c in running.cameras}
        retired = [by_name[n] for n in diff.cameras_removed + diff.cameras_restarted]
        for camera in retired:  # signalled together, awaited together
            camera.request_stop()
        for camera in retired:
            self._retire(camera, running.pools)
        if sink is not None:
            self._swap_sink(running, new, sink)
        state, parts, view = (running.state, running.extensions, running.live_view)
        if extensions is not None:
            for part in reversed(running.extensions):
                self._lifecycle.remove(part)
            state, parts, view = extensions
            for part in parts:
                self._lifecycle.add("extensions", part)
        for pool in fresh_pools.values():
            self._lifecycle.add("workers", pool)
        gone: list[tuple[str, str]] = []
        for name in diff.cameras_rewired + diff.cameras_regions:
            camera = by_name[name]
            cam_cfg = new.cameras[name] if name in diff.cameras_regions else camera.cfg
            gone += [(name, r) for r in camera.cfg.regions if r not in cam_cfg.regions]
            # Lanes on the new schedulers first, then the swap, then the old lanes drain.
            unused = camera.use_schedulers(b.schedulers(cam_cfg, pools), cam_cfg)
            camera.use_input(model_input_hw(pools[cam_cfg.model].model))
            self._cameras.set_model(name, models[cam_cfg.model])
            for scheduler in unused:
                scheduler.remove_camera(name, timeout=5.0)
        for camera in fresh_cams:
            self._cameras.add(camera, models[camera.cfg.model])
            self._progress.started(camera.name)
            self._lifecycle.add("capture", camera)
        for name in diff.models_removed + diff.models_changed:
            # finishes what it holds: results of untouched frames still publish
            self._lifecycle.remove(running.pools[name])
        listener = running.listener
        if diff.metrics_changed:
            listener = self._swap_listener(running, new, view)
        self._clear_regions(gone, new)
        if (fresh_cams or diff.cameras_regions) and self._link.connected:
            # New cameras (or regions): Home Assistant discovery and states for them too.
            self._link.request_greet()
        cameras = [c for c in running.cameras if c not in retired] + fresh_cams
        return Pipeline(new, models, pools, cameras, running.sink if sink is None else sink,
                        running.publisher, state, parts, view, listener)

    def _clear_regions(self, gone: list[tuple[str, str]], new: Config) -> None:
        """Removed regions: clear their retained state, snapshot and Home Assistant sensor,
        so nothing shows a region that no longer exists (best effort: while connected)."""
        ha = new.mqtt.homeassistant
        prefix = ha.discovery_prefix if ha.enabled else None
        for camera, region in gone:
            for msg in retired_messages(self._link.topics, camera, region, prefix):
                self._link.publish_now(msg)
            log.info("reload: camera %s: region %s removed", camera, region)

    def _retire(self, camera: Camera, pools: dict[str, WorkerPool]) -> None:
        self._lifecycle.remove(camera)
        self._cameras.remove(camera.name)
        dropped = pools[camera.cfg.model].scheduler.remove_camera(camera.name, timeout=5.0)
        if dropped:
            log.warning("reload: camera %s: %d queued frames dropped", camera.name, dropped)
        self._progress.forget(camera.name)

    def _swap_sink(self, running: Pipeline, new: Config, sink: SinkPart) -> None:
        # The old client stops first: the same client id on the same broker would otherwise
        # take the session over. Results wait in the publisher's queue meanwhile; what the old
        # broker did not acknowledge stays in the outbox, which the new sink reopens.
        m = new.mqtt
        with running.publisher.hold():
            self._link.use(sink.sink, self._builder.topics(new))
            self._lifecycle.replace(running.sink, sink)
            running.publisher.configure(m.qos, m.result_retain, m.message_expiry_s)
        where = getattr(sink.sink, "server_description", None) or f"{m.host}:{m.port}"
        log.info("reload: mqtt reconnecting to %s", where)

    def _swap_listener(self, running: Pipeline, new: Config, view: LiveView | None
                       ) -> MetricsServer | None:
        old = running.listener
        if old is not None:
            self._lifecycle.remove(old)
        server = self._builder.listener(new, view)
        if server is None:
            return None
        try:
            self._lifecycle.add("listener", server)
        except OSError as exc:
            log.error("reload: metrics.listen: cannot listen on %s: %s", new.metrics.listen,
                      exc.strerror or exc)
            return None
        return server
