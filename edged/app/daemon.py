"""The daemon: builds the pipeline from a config, starts it, and stops it in mirrored order."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry

from edged.capture.camera import Camera
from edged.mqtt.extensions.commands import CommandHandler
from edged.config import Config, load_config, split_listen
from edged.config.credentials import resolve_password
from edged.errors import ConfigError, EdgedError, SourceError
from edged.app.health import Progress, Rate, camera_stall, status_line
from edged.mqtt.extensions.homeassistant import HomeAssistant
from edged.service.metrics import Metrics, MetricsServer
from edged.model.loaded import LoadedModel, load_model
from edged.service.notify import Notifier, Watchdog, watchdog_interval
from edged.mqtt.outbox import Outbox, outbox_path
from edged.mqtt.publisher import Publisher
from edged.app.reload import ConfigDiff, diff_configs
from edged.model.runtime import find_runtime
from edged.inference.scheduler import Scheduler
from edged.mqtt.sink import MqttSink
from edged.mqtt.extensions.snapshots import Snapshotter, check_snapshot_labels
from edged.mqtt.extensions.state import StateTracker
from edged.mqtt.topics import Topics
from edged.web.server import LiveView
from edged.inference.worker import WorkerPool

log = logging.getLogger(__name__)


class Component(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class _SinkComponent:
    def __init__(self, sink: MqttSink, drain_timeout: float) -> None:
        self.sink, self._timeout = sink, drain_timeout

    def start(self) -> None:
        self.sink.start()

    def stop(self) -> None:
        self.sink.stop(self._timeout)


class Daemon:
    def __init__(self, cfg: Config, registry: CollectorRegistry | None = None,
                 config_path: str | None = None, notifier: Notifier | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics(registry)
        self.cameras: list[Camera] = []
        self.metrics_server: MetricsServer | None = None
        self.sink: MqttSink | None = None
        self._started: list[Component] = []
        # For systemd, health and reload (constructors only store state).
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else Notifier(None)
        self._environ = environ if environ is not None else {}
        self.progress = Progress()
        self.pools: dict[str, WorkerPool] = {}
        self.publisher: Publisher | None = None
        self._sink_component: _SinkComponent | None = None
        self._tickets: dict[str, Iterator[int]] = {}  # per camera, for life: seq survives reloads
        self._watchdog: Watchdog | None = None
        self._rate = Rate()
        self._ready = False
        # The MQTT-side parts tied to the sink (state, Home Assistant, commands): re-attached
        # to a new sink when a reload changes the MQTT settings.
        self.state: StateTracker | None = None
        self._homeassistant: HomeAssistant | None = None
        self._commands: CommandHandler | None = None
        self._camera_map: dict[str, Camera] = {}  # live view for the command handler
        self._model_map: dict[str, LoadedModel] = {}  # camera -> its model, likewise
        self.live_view: LiveView | None = None
        self._snapshotter: Snapshotter | None = None

    def _outbox(self, cfg: Config) -> Outbox | None:
        """The durable outbox for QoS>=1 results, unless disabled."""
        ob = cfg.mqtt.outbox
        if not ob.enabled or cfg.mqtt.qos == 0:
            return None
        return Outbox(outbox_path(ob, dict(os.environ)), ob.max_messages, ob.max_bytes,
                      ob.synchronous, on_drop=self.metrics.outbox_dropped.labels("full").inc)

    def _make_sink(self, cfg: Config, topics: Topics) -> MqttSink:
        """A sink for `cfg` (not started); raises EdgedError for an unusable password source."""
        return MqttSink(cfg.mqtt, topics, self.metrics, self._outbox(cfg),
                        resolve_password(cfg.mqtt))

    def _attach_mqtt_parts(self, cfg: Config, sink: MqttSink, topics: Topics) -> None:
        """Wire state, Home Assistant discovery and commands to `sink` (before it starts)."""
        cameras = [c.name for c in self.cameras]
        if cfg.mqtt.state.enabled:
            if self.state is None:
                self.state = StateTracker(sink, topics, cfg.mqtt.state,
                                          {c.name: c.cfg.smoothing for c in self.cameras},
                                          self.metrics)
                assert self.publisher is not None
                self.publisher.listeners.append(self.state.observe)
            self.state.use_sink(sink, topics)
            sink.add_connect_hook(self.state.republish)
        if cfg.mqtt.homeassistant.enabled:
            self._homeassistant = HomeAssistant(sink, topics, cfg.mqtt.homeassistant, cameras)
            self._homeassistant.attach()
        if self._commands is not None:
            self._commands.use_sink(sink, topics)
        if self._snapshotter is not None:
            self._snapshotter.use_sink(sink, topics)
            sink.add_connect_hook(self._snapshotter.republish)

    def _build(self) -> list[Component]:
        cfg = self.cfg
        enabled = {name: cam for name, cam in cfg.cameras.items() if cam.enabled}
        if not enabled:
            raise EdgedError("cameras: no camera is enabled")
        runtime = find_runtime()
        self.metrics.set_build(str(runtime))
        log.info("edged on %s, node %s", runtime, cfg.node_id)
        models = {name: load_model(name, cfg.models[name])
                  for name in sorted({cam.model for cam in enabled.values()})}
        topics = Topics(cfg.mqtt.topic_prefix, cfg.node_id)
        self.sink = self._make_sink(cfg, topics)
        publisher = Publisher(self.sink, topics, cfg.mqtt.qos, self.metrics)
        publisher.retain = cfg.mqtt.result_retain
        self.publisher = publisher
        pools = {name: self._new_pool(model, cfg) for name, model in models.items()}
        self.pools = pools
        self.cameras = [Camera(name, cam, pools[cam.model].scheduler, self.metrics,
                               self._camera_tickets(name))
                        for name, cam in enabled.items()]
        self._camera_map.update({c.name: c for c in self.cameras})
        self._model_map.update({c.name: models[c.cfg.model] for c in self.cameras})
        if cfg.mqtt.commands.enabled:
            self._commands = CommandHandler(self.sink, topics, self._camera_map,
                                            self._model_map, None, self.metrics)
        self._attach_mqtt_parts(cfg, self.sink, topics)
        if self._commands is not None:
            self._commands.use_state(self.state)
        self._watch_outbox()
        for camera in self.cameras:
            try:
                camera.open()
            except SourceError as exc:
                for opened in self.cameras:
                    opened.stop()
                raise EdgedError(f"cameras.{camera.name}: {exc}") from None
        components: list[Component] = []
        if cfg.metrics.enabled:
            host, port = split_listen(cfg.metrics.listen)
            self.metrics_server = MetricsServer(self.metrics, host, port, self.readiness)
            components.append(self.metrics_server)
        self._sink_component = _SinkComponent(self.sink, cfg.mqtt.drain_timeout_s)
        components += [self._sink_component, publisher]
        snapshots, view = self._live_view(enabled, models, topics, publisher)
        # Snapshots start before and stop after the publisher: its last results may change a
        # state. The view stops before the listener, ending its streams first.
        components[-1:-1] = snapshots
        components += view
        if self._commands is not None:
            components.append(self._commands)
        components += [*pools.values(), *self.cameras]
        for camera in self.cameras:
            self.progress.started(camera.name)
        return components

    # --- helpers for start and reload -------------------------------------------------------

    def _new_pool(self, model: LoadedModel, cfg: Config) -> WorkerPool:
        self.metrics.model_info.labels(model.name, model.sha256, model.backend_key).set(1)
        return WorkerPool(model, cfg.models[model.name].workers,
                          Scheduler(capacity=2 * cfg.models[model.name].workers),
                          self._deliver, self.metrics)

    def _deliver(self, outcome) -> None:  # noqa: ANN001 - worker.Outcome
        # Workers call this: their progress feeds the watchdog before the result is published.
        self.progress.processed(outcome.job.camera)
        assert self.publisher is not None
        self.publisher.submit(outcome)

    def _camera_tickets(self, name: str) -> Iterator[int]:
        return self._tickets.setdefault(name, itertools.count())

    def _watch_outbox(self) -> None:
        def stats() -> tuple[int, int, float]:
            sink = self.sink
            return sink.outbox_stats() if sink is not None else (0, 0, 0.0)

        self.metrics.outbox_messages.set_function(lambda: stats()[0])
        self.metrics.outbox_bytes.set_function(lambda: stats()[1])
        self.metrics.outbox_oldest_seconds.set_function(lambda: stats()[2])

    # --- health -----------------------------------------------------------------------------

    def stalls(self) -> list[str]:
        """Cameras whose pipeline did not move within their timeout (watchdog withholds)."""
        now = time.monotonic()
        problems = []
        for camera in list(self.cameras):
            progress = self.progress.get(camera.name)
            if camera.finished.is_set() or progress is None:
                continue  # an ended file is not a hang; the daemon finishes on its own
            why = camera_stall(now, progress, camera.alive_mono, camera.last_frame_mono,
                               camera.cfg.timeout_s)
            if why:
                problems.append(f"camera {camera.name}: {why}")
        return problems

    def readiness(self) -> dict:
        """The /readyz body: ready, and what is not."""
        problems = [] if self._ready else ["models and cameras not started"]
        for name in sorted({c.cfg.model for c in self.cameras} - self.pools.keys()):
            problems.append(f"model {name}: not loaded")
        problems += self.stalls()
        stalled = {p.split(":")[0] for p in problems}
        problems += [f"camera {name}: {why}" for name, why in self._stale_cameras()
                     if f"camera {name}" not in stalled]
        problems += [f"camera {c.name}: source ended" for c in self.cameras
                     if c.finished.is_set()]
        sink = self.sink
        connected = sink is not None and sink.connected
        if not connected:
            problems.append(f"mqtt: not connected to {self.cfg.mqtt.host}:{self.cfg.mqtt.port}")
        self.metrics.ready.set(0 if problems else 1)
        return {"ready": not problems, "problems": problems,
                "models": sorted(self.pools), "cameras": sorted(c.name for c in self.cameras),
                "mqtt_connected": connected}

    def _stale_cameras(self) -> list[tuple[str, str]]:
        """Cameras with no fresh frame within their timeout (down, or not up yet)."""
        now = time.monotonic()
        out = []
        for c in self.cameras:
            progress = self.progress.get(c.name)
            if c.finished.is_set() or progress is None:
                continue
            since = c.last_frame_mono or progress.started
            if now - since > c.cfg.timeout_s or not c.last_frame_mono:
                what = "no frame for" if c.last_frame_mono or now - since > c.cfg.timeout_s \
                    else "no frame yet after"
                out.append((c.name, f"{what} {now - since:.1f}s"))
        return out

    def status(self) -> str:
        stalled = {p.split(":")[0] for p in self.stalls()}
        stalled |= {f"camera {name}" for name, _ in self._stale_cameras()}
        up = sum(1 for c in self.cameras
                 if f"camera {c.name}" not in stalled and not c.finished.is_set())
        sink = self.sink
        outbox = sink.outbox_stats()[0] if sink is not None else 0
        broker = "connected" if sink is not None and sink.connected else "disconnected"
        return status_line(up, len(self.cameras), self._rate.update(self.progress.total()),
                           broker, outbox)

    def _live_view(self, enabled: dict, models: dict, topics: Topics, publisher: Publisher
                   ) -> tuple[list[Component], list[Component]]:
        """Snapshots over MQTT and the web view, when configured (both off by default)."""
        cfg = self.cfg
        snapshots: list[Component] = []
        view: list[Component] = []
        snapping = {name: cam for name, cam in enabled.items() if cam.snapshot.enabled}
        auth = cfg.web.auth
        try:
            for name, cam in snapping.items():
                check_snapshot_labels(name, cam, list(models[cam.model].labels))
            password = (resolve_password(auth, section="web.auth")
                        if cfg.web.enabled and auth is not None else None)
        except EdgedError:
            for camera in self.cameras:
                camera.stop()
            raise
        if snapping and self.state is not None:
            snapshotter = Snapshotter(self.sink, topics, snapping, publisher.last_frames)
            self.state.change_listeners.append(snapshotter.on_change)
            self.sink.add_connect_hook(snapshotter.republish)
            self._snapshotter = snapshotter
            snapshots.append(snapshotter)
        if cfg.web.enabled and self.metrics_server is not None:
            server = self.metrics_server
            host = split_listen(cfg.metrics.listen)[0]
            self.live_view = LiveView(cfg.web, cfg.node_id, self.cameras, self.metrics.registry,
                                      self.state, password, lambda: (host, server.port))
            publisher.listeners.append(self.live_view.on_result)
            self.metrics_server.mounts.append((self.live_view.handles, self.live_view.app))
            view.append(self.live_view)
        return snapshots, view

    def start(self) -> None:
        """Start everything, or stop what started and raise EdgedError."""
        try:
            for component in self._build():
                component.start()
                self._started.append(component)
            self._ready = True
            # Models loaded and sources set up; the broker may still be connecting.
            self.notifier.ready(self.status())
            interval = watchdog_interval(self._environ, os.getpid())
            if interval is not None and self.notifier.enabled:
                self._watchdog = Watchdog(self.notifier, interval, self._watchdog_problems)
                self._watchdog.start()
        except OSError as exc:
            self.stop()
            raise EdgedError(f"metrics.listen: cannot listen on {self.cfg.metrics.listen}: "
                             f"{exc.strerror or exc}") from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse start order: capture, then workers finish, then publish, then MQTT."""
        if self._ready:
            self.notifier.stopping()
            self._ready = False
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("error while stopping %s", type(component).__name__)

    @property
    def finished(self) -> bool:
        """Every camera is finite and has ended."""
        return bool(self.cameras) and all(c.finished.is_set() for c in self.cameras)

    def _watchdog_problems(self) -> list[str]:
        problems = self.stalls()
        if not problems:
            self.metrics.watchdog_pings.inc()
        return problems

    def run(self, stop: threading.Event, reload: threading.Event | None = None,
            status_every_s: float = 5.0) -> None:
        """Start, run until `stop` is set or every finite source has ended, then stop.
        When `reload` is set (SIGHUP), re-read the config file and apply the difference."""
        self.start()
        next_status = time.monotonic() + status_every_s
        try:
            while not stop.wait(0.2):
                if self.finished:
                    log.info("all sources ended; finishing")
                    break
                if reload is not None and reload.is_set():
                    reload.clear()
                    self.reload()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + status_every_s
                    self.notifier.status(self.status())
                    self.readiness()  # keeps edged_ready current without a /readyz probe
        finally:
            self.stop()
        log.info("stopped")

    # --- hot reload (SIGHUP) ----------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; apply what changed, or keep running on the old config."""
        self.notifier.reloading()
        try:
            if self.config_path is None:
                log.error("reload: no config file to re-read")
                return False
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                for line in exc.lines:
                    log.error("reload: %s", line)
                log.error("reload: invalid config; still running on the previous one")
                self.metrics.reloads.labels("invalid").inc()
                return False
            diff = diff_configs(self.cfg, new)
            try:
                self._apply(new, diff)
            except EdgedError as exc:
                log.error("reload: %s; still running on the previous config", exc)
                self.metrics.reloads.labels("failed").inc()
                return False
            log.info("reload: applied (%s)", diff.summary())
            self.metrics.reloads.labels("applied").inc()
            return True
        finally:
            self.notifier.ready(self.status())

    def _apply(self, new: Config, diff: ConfigDiff) -> None:
        """Prepare everything that can fail first (models, sources); then switch over."""
        if not any(cam.enabled for cam in new.cameras.values()):
            raise EdgedError("cameras: no camera is enabled")
        fresh_pools = {name: self._new_pool(load_model(name, new.models[name]), new)
                       for name in diff.models_added + diff.models_changed}
        pools = {**{n: p for n, p in self.pools.items() if n not in diff.models_removed},
                 **fresh_pools}
        new_sink = None
        if diff.mqtt_changed:
            topics = Topics(new.mqtt.topic_prefix, new.node_id)
            new_sink = (self._make_sink(new, topics), topics)
        fresh_cams: list[Camera] = []
        for name in diff.cameras_added + diff.cameras_restarted:
            cam_cfg = new.cameras[name]
            camera = Camera(name, cam_cfg, pools[cam_cfg.model].scheduler, self.metrics,
                            self._camera_tickets(name))
            try:
                camera.open()
            except SourceError as exc:
                for opened in fresh_cams:
                    opened.stop()
                raise EdgedError(f"cameras.{name}: {exc}") from None
            fresh_cams.append(camera)
        # Switch over; from here on nothing is expected to fail.
        if diff.log_level_changed:
            logging.getLogger().setLevel(new.log_level.upper())
        if new_sink is not None:
            self._swap_sink(new, *new_sink)
        for pool in fresh_pools.values():
            pool.start()
            self._started.insert(self._started.index(self.publisher) + 1, pool)
        by_name = {c.name: c for c in self.cameras}
        for name in diff.cameras_removed + diff.cameras_restarted:
            self._retire_camera(by_name[name])
        for name in diff.cameras_rewired:
            camera = by_name[name]
            old = self.pools[camera.cfg.model].scheduler
            camera.use_scheduler(pools[camera.cfg.model].scheduler)
            self._model_map[name] = pools[camera.cfg.model].model
            old.remove_camera(name, timeout=5.0)
        for camera in fresh_cams:
            self._camera_map[camera.name] = camera
            self._model_map[camera.name] = pools[camera.cfg.model].model
            if self.state is not None:
                self.state.add_camera(camera.name, camera.cfg.smoothing)
            camera.start()
            self.progress.started(camera.name)
            self._started.append(camera)
            self.cameras.append(camera)
        for name in diff.models_removed + diff.models_changed:
            old_pool = self.pools[name]
            old_pool.stop()  # finishes what it holds: results of untouched frames still publish
            self._started.remove(old_pool)
        self.pools = pools
        self.cfg = new
        if diff.metrics_changed:
            self._swap_metrics_server(new)

    def _retire_camera(self, camera: Camera) -> None:
        camera.stop()
        self._camera_map.pop(camera.name, None)
        self._model_map.pop(camera.name, None)
        dropped = self.pools[camera.cfg.model].scheduler.remove_camera(camera.name, timeout=5.0)
        if dropped:
            log.warning("reload: camera %s: %d queued frames dropped", camera.name, dropped)
        self.cameras.remove(camera)
        self._started.remove(camera)
        self.progress.forget(camera.name)

    def _swap_sink(self, new: Config, sink: MqttSink, topics: Topics) -> None:
        # The old client stops first: the same client id on the same broker would otherwise
        # take the session over. Results wait in the publisher's queue meanwhile; what the old
        # broker did not acknowledge stays in the outbox, which the new sink reopens.
        assert self.publisher is not None and self._sink_component is not None
        with self.publisher.hold():
            self._sink_component.stop()
            self._attach_mqtt_parts(new, sink, topics)
            sink.start()
            self.publisher.retain = new.mqtt.result_retain
            self.publisher.use_sink(sink, topics, new.mqtt.qos)
            self.sink = sink
            self._sink_component.sink = sink
            self._sink_component._timeout = new.mqtt.drain_timeout_s
        log.info("reload: mqtt reconnecting to %s:%d", new.mqtt.host, new.mqtt.port)

    def _swap_metrics_server(self, new: Config) -> None:
        old = self.metrics_server
        if old is not None:
            old.stop()
            self._started.remove(old)
            self.metrics_server = None
        if new.metrics.enabled:
            host, port = split_listen(new.metrics.listen)
            server = MetricsServer(self.metrics, host, port, self.readiness)
            try:
                server.start()
            except OSError as exc:
                log.error("reload: metrics.listen: cannot listen on %s: %s", new.metrics.listen,
                          exc.strerror or exc)
                return
            self.metrics_server = server
            self._started.insert(0, server)
