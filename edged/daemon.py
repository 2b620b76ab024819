"""The daemon: builds the pipeline from a config, starts it, and stops it in mirrored order."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from prometheus_client import CollectorRegistry

from edged.camera import Camera
from edged.commands import CommandHandler
from edged.credentials import resolve_password
from edged.homeassistant import HomeAssistant
from edged.outbox import Outbox, outbox_path
from edged.state import StateTracker
from edged.config import Config, split_listen
from edged.errors import EdgedError, SourceError
from edged.metrics import Metrics, MetricsServer
from edged.model import load_model
from edged.publisher import Publisher
from edged.runtime import find_runtime
from edged.scheduler import Scheduler
from edged.sinks.mqtt import MqttSink
from edged.snapshot import Snapshotter, check_snapshot_labels
from edged.topics import Topics
from edged.web import LiveView
from edged.worker import WorkerPool

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
    def __init__(self, cfg: Config, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics(registry)
        self.cameras: list[Camera] = []
        self.metrics_server: MetricsServer | None = None
        self.sink: MqttSink | None = None
        self._started: list[Component] = []
        self.state: StateTracker | None = None
        self.live_view: LiveView | None = None

    def _outbox(self) -> Outbox | None:
        """The durable outbox for QoS>=1 results, unless disabled."""
        ob = self.cfg.mqtt.outbox
        if not ob.enabled or self.cfg.mqtt.qos == 0:
            return None
        return Outbox(outbox_path(ob), ob.max_messages, ob.max_bytes, ob.synchronous,
                      on_drop=self.metrics.outbox_dropped.labels("full").inc)

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
        self.sink = MqttSink(cfg.mqtt, topics, self.metrics, self._outbox(),
                             resolve_password(cfg.mqtt))
        publisher = Publisher(self.sink, topics, cfg.mqtt.qos, self.metrics)
        publisher.retain = cfg.mqtt.result_retain
        if cfg.mqtt.homeassistant.enabled:
            HomeAssistant(self.sink, topics, cfg.mqtt.homeassistant, list(enabled)).attach()
        if cfg.mqtt.state.enabled:
            self.state = StateTracker(self.sink, topics, cfg.mqtt.state,
                                      {name: cam.smoothing for name, cam in enabled.items()},
                                      self.metrics)
            publisher.listeners.append(self.state.observe)
            self.sink.add_connect_hook(self.state.republish)
        pools = {name: WorkerPool(model, cfg.models[name].workers,
                                  Scheduler(capacity=2 * cfg.models[name].workers),
                                  publisher.submit, self.metrics)
                 for name, model in models.items()}
        self.cameras = [Camera(name, cam, pools[cam.model].scheduler, self.metrics)
                        for name, cam in enabled.items()]
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
            self.metrics_server = MetricsServer(self.metrics, host, port)
            components.append(self.metrics_server)
        components += [_SinkComponent(self.sink, cfg.mqtt.drain_timeout_s), publisher]
        snapshots, view = self._live_view(enabled, models, topics, publisher)
        # Snapshots start before and stop after the publisher: its last results may change a
        # state. The view stops before the listener, ending its streams first.
        components[-1:-1] = snapshots
        components += view
        if cfg.mqtt.commands.enabled:
            components.append(CommandHandler(
                self.sink, topics, {c.name: c for c in self.cameras},
                {c.name: models[c.cfg.model] for c in self.cameras}, self.state, self.metrics))
        components += [*pools.values(), *self.cameras]
        return components

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
        except OSError as exc:
            self.stop()
            raise EdgedError(f"metrics.listen: cannot listen on {self.cfg.metrics.listen}: "
                             f"{exc.strerror or exc}") from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse start order: capture, then workers finish, then publish, then MQTT."""
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

    def run(self, stop: threading.Event) -> None:
        """Start, run until `stop` is set or every finite source has ended, then stop."""
        self.start()
        try:
            while not stop.wait(0.2):
                if self.finished:
                    log.info("all sources ended; finishing")
                    break
        finally:
            self.stop()
        log.info("stopped")
