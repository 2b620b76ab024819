"""Build: from a config to the pipeline's parts. Constructs, never starts.

Start-up and reload both come through here, so the parts a reload makes are made exactly as
at start (the live view mounted on a new listener, a new camera seen by every extension).
Nothing here opens a socket, a file or a thread: the lifecycle does that, tier by tier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edged.app.cameras import CameraSet
from edged.app.events import BrokerConnected, Events, HeartbeatDue
from edged.app.health import Progress
from edged.app.lifecycle import Component
from edged.capture.camera import Camera, model_input_hw
from edged.config import CameraConfig, Config, split_listen
from edged.config.credentials import resolve_password
from edged.errors import EdgedError, SourceError
from edged.frame import split_subject
from edged.inference.backends.fastpath import check_fast_path
from edged.inference.scheduler import Scheduler
from edged.inference.worker import Outcome, WorkerPool
from edged.model.loaded import LoadedModel, load_model
from edged.mqtt.contract import Topics
from edged.mqtt.extensions.captures import CaptureMetrics, Capturer
from edged.mqtt.extensions.commands import CommandHandler
from edged.mqtt.extensions.homeassistant import HomeAssistant
from edged.mqtt.extensions.snapshots import (
    Snapshotter,
    check_region_snapshot_labels,
    check_snapshot_labels,
)
from edged.mqtt.extensions.state import StateTracker
from edged.mqtt.heartbeat import expire_after
from edged.mqtt.link import MqttLink
from edged.mqtt.outbox import Outbox, outbox_path
from edged.mqtt.publisher import Publisher
from edged.mqtt.reply_topics import ReplyTopicPolicy
from edged.mqtt.sink import MqttSink
from edged.service.metrics import Metrics, MetricsServer
from edged.sinks.base import Sink
from edged.web.server import LiveView

log = logging.getLogger(__name__)

# (config, topics, metrics, on_connected, on_beat) -> a sink, not started. Tests and
# `edged bench` pass their own (e.g. a NullSink); the daemon's default is the MQTT sink.
SinkFactory = Callable[[Config, Topics, Metrics, Callable[[], None], Callable[[], None]], Sink]


def mqtt_sink(cfg: Config, topics: Topics, metrics: Metrics,
              on_connected: Callable[[], None], on_beat: Callable[[], None]) -> Sink:
    """The MQTT sink with its durable outbox; EdgedError for an unusable password source."""
    ob = cfg.mqtt.outbox
    outbox = None
    if ob.enabled and cfg.mqtt.qos > 0:
        outbox = Outbox(outbox_path(ob, dict(os.environ)), ob.max_messages, ob.max_bytes,
                        ob.synchronous, metrics=metrics,
                        fallback_max_messages=ob.fallback_max_messages,
                        fallback_max_bytes=ob.fallback_max_bytes, retry_max_s=ob.retry_max_s)
    return MqttSink(cfg.mqtt, topics, metrics, outbox, resolve_password(cfg.mqtt),
                    on_connected, on_beat)


def enabled_cameras(cfg: Config) -> dict[str, CameraConfig]:
    return {name: cam for name, cam in cfg.cameras.items() if cam.enabled}


class SinkPart:
    """The sink as a lifecycle part: stopping it delivers what it can within the drain time."""

    def __init__(self, sink: Sink, drain_timeout_s: float) -> None:
        self.sink = sink
        self._drain = drain_timeout_s

    def start(self) -> None:
        self.sink.start()

    def stop(self) -> None:
        self.sink.stop(self._drain)


class SourceOpener:
    """The `sources` tier: opens a camera's finite source before anything else starts (a
    file that cannot be read is one clear error); live sources open in their thread."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera

    def start(self) -> None:
        try:
            self.camera.open()
        except SourceError as exc:
            raise EdgedError(f"cameras.{self.camera.name}: {exc}") from None

    def stop(self) -> None:
        self.camera.stop()  # closes what open() opened; a no-op once capture stopped it


@dataclass
class Pipeline:
    """Every part of a running edged, made by `Builder.pipeline` and not started."""

    cfg: Config
    models: dict[str, LoadedModel]
    pools: dict[str, WorkerPool]
    cameras: list[Camera]
    sink: SinkPart
    publisher: Publisher
    state: StateTracker | None = None
    extensions: list[Component] = field(default_factory=list)
    live_view: LiveView | None = None
    listener: MetricsServer | None = None

    def tiers(self) -> dict[str, list[Component]]:
        return {"sources": [SourceOpener(c) for c in self.cameras],
                "listener": [self.listener] if self.listener is not None else [],
                "sink": [self.sink],
                "extensions": list(self.extensions),
                "publisher": [self.publisher],
                "workers": list(self.pools.values()),
                "capture": list(self.cameras)}


class Builder:
    """Makes parts; holds only what every part shares (metrics, events, the camera set)."""

    def __init__(self, metrics: Metrics, events: Events, cameras: CameraSet,
                 progress: Progress, readiness: Callable[[], dict],
                 sink_factory: SinkFactory = mqtt_sink) -> None:
        self._metrics = metrics
        self._events = events
        self._cameras = cameras
        self._progress = progress
        self._readiness = readiness
        self._sink_factory = sink_factory
        self._listener: MetricsServer | None = None  # the newest listener made
        self._capture_metrics: CaptureMetrics | None = None  # registered once, shared

    def listen_address(self, cfg: Config) -> Callable[[], tuple[str, int]]:
        """Where the newest listener listens (the live view logs it; a reload may move it)."""
        def address() -> tuple[str, int]:
            server = self._listener
            host = split_listen(cfg.metrics.listen)[0] if cfg.metrics.enabled else "127.0.0.1"
            return host, server.port if server is not None else 0

        return address

    @staticmethod
    def topics(cfg: Config) -> Topics:
        return Topics(cfg.mqtt.topic_prefix, cfg.node_id)

    def model(self, name: str, cfg: Config) -> LoadedModel:
        return load_model(name, cfg.models[name])

    def pool(self, model: LoadedModel, cfg: Config, publisher: Publisher) -> WorkerPool:
        self._metrics.model_info.labels(model.name, model.sha256, model.backend_key).set(1)
        check_fast_path(model, self._metrics.backend_fast_path)  # one warning when it is slow
        workers = cfg.models[model.name].workers

        def deliver(outcome: Outcome) -> None:
            # Workers call this: their progress feeds the watchdog before the result is out.
            self._progress.processed(outcome.job.camera)
            publisher.submit(outcome)

        return WorkerPool(model, workers, Scheduler(capacity=2 * workers), deliver,
                          self._metrics)

    @staticmethod
    def check_camera(name: str, cfg: Config, models: Mapping[str, LoadedModel]) -> None:
        """What can only be checked against the loaded model (EdgedError naming the key)."""
        cam = cfg.cameras[name]
        if cam.snapshot.enabled and not cam.regions:
            check_snapshot_labels(name, cam, list(models[cam.model].labels))
        for rname, region in cam.regions.items():
            snapshot = region.snapshot or cam.snapshot
            model = region.model or cam.model
            if snapshot.enabled:
                check_region_snapshot_labels(name, rname, snapshot, model,
                                             list(models[model].labels))

    @staticmethod
    def schedulers(cam: CameraConfig, pools: Mapping[str, WorkerPool]) -> dict[str, Scheduler]:
        """Model -> scheduler for every model a camera's frames (or regions) go to."""
        return {m: pools[m].scheduler for m in sorted(cam.models_used())}

    def camera(self, name: str, cfg: Config, pools: Mapping[str, WorkerPool]) -> Camera:
        cam = cfg.cameras[name]
        schedulers = self.schedulers(cam, pools)
        main = schedulers.get(cam.model) or next(iter(schedulers.values()))
        return Camera(name, cam, main, self._metrics, self._cameras.tickets(name),
                      input_hw=model_input_hw(pools[cam.model].model),
                      schedulers=schedulers, tickets_for=self._cameras.tickets)

    def sink(self, cfg: Config) -> SinkPart:
        sink = self._sink_factory(cfg, self.topics(cfg), self._metrics,
                                  lambda: self._events.emit(BrokerConnected()),
                                  lambda: self._events.emit(HeartbeatDue()))
        return SinkPart(sink, cfg.mqtt.drain_timeout_s)

    def publisher(self, cfg: Config, link: MqttLink) -> Publisher:
        m = cfg.mqtt
        return Publisher(link, self._events, m.qos, m.result_retain, m.message_expiry_s,
                         self._metrics)

    def listener(self, cfg: Config, live_view: LiveView | None) -> MetricsServer | None:
        if not cfg.metrics.enabled:
            return None
        host, port = split_listen(cfg.metrics.listen)
        mounts = [(live_view.handles, live_view.app)] if live_view is not None else []
        self._listener = MetricsServer(self._metrics, host, port, self._readiness, mounts)
        return self._listener

    def extensions(self, cfg: Config, link: MqttLink, models: Mapping[str, LoadedModel],
                   listen: Callable[[], tuple[str, int]]
                   ) -> tuple[StateTracker | None, list[Component], LiveView | None]:
        """State, Home Assistant, commands, snapshots and the live view, as configured."""
        m = cfg.mqtt
        state = (StateTracker(link, self._events, m.state, self._cameras, self._metrics)
                 if m.state.enabled else None)
        parts: list[Component] = [state] if state is not None else []
        if m.homeassistant.enabled:
            parts.append(HomeAssistant(link, self._events, m.homeassistant,
                                       self._cameras.subjects,
                                       expire_after(m.status.interval_s)))
        if m.commands.enabled:
            parts.append(CommandHandler(link, self._cameras, state, self._metrics,
                                        ReplyTopicPolicy.from_config(
                                            m.commands, m.homeassistant.discovery_prefix)))
        for name in enabled_cameras(cfg):
            self.check_camera(name, cfg, models)
        if state is not None:
            # Always there with state: it reads each camera's snapshot settings at each
            # change, so a camera that a reload adds with snapshots gets them.
            parts.append(Snapshotter(link, self._events, self._cameras.snapshot))
        captures = self.capturer(cfg, link)
        if captures is not None:  # after the state tracker: it sees each change first
            parts.append(captures)
        view = None
        if cfg.web.enabled and cfg.metrics.enabled:
            auth = cfg.web.auth
            password = (resolve_password(auth, section="web.auth") if auth is not None
                        else None)
            view = LiveView(cfg.web, cfg.node_id, self._cameras, self._metrics.registry,
                            self._events, state, password, listen,
                            captures=captures.latest if captures is not None else None)
            parts.append(view)
        return state, parts, view

    def capturer(self, cfg: Config, link: MqttLink) -> Capturer | None:
        """Evidence captures, when an enabled camera has capture rules."""
        if not any(cam.capture.enabled or any(r.capture is not None and r.capture.enabled
                                              for r in cam.regions.values())
                   for cam in enabled_cameras(cfg).values()):
            return None
        if self._capture_metrics is None:
            self._capture_metrics = CaptureMetrics(self._metrics.registry)
        cameras = self._cameras
        # Keyed by subject (camera, or camera/region): a region's own rules, else the camera's.
        rules_of = cameras.capture_rules

        def labels_of(name: str) -> list[str]:
            camera, region = split_subject(name)
            cam = cameras.config(camera)
            rcfg = cam.regions.get(region) if cam is not None and region else None
            if rcfg is not None and rcfg.model is not None:
                return []  # a region's own model: its labels were checked at load
            model = cameras.model_of(camera)
            return list(model.labels) if model is not None else []

        return Capturer(cfg.capture, rules_of, self._capture_metrics, link, self._events,
                        labels_of, environ=os.environ)

    def pipeline(self, cfg: Config, link_for: Callable[[Sink, Topics], MqttLink]
                 ) -> tuple[Pipeline, MqttLink]:
        """Everything for `cfg`. `link_for` makes (or re-points) the MQTT link."""
        enabled = enabled_cameras(cfg)
        if not enabled:
            raise EdgedError("cameras: no camera is enabled")
        models = {name: self.model(name, cfg)
                  for name in sorted(set().union(*(cam.models_used()
                                                   for cam in enabled.values())))}
        sink = self.sink(cfg)
        link = link_for(sink.sink, self.topics(cfg))
        publisher = self.publisher(cfg, link)
        pools = {name: self.pool(model, cfg, publisher) for name, model in models.items()}
        cameras = [self.camera(name, cfg, pools) for name in enabled]
        state, extensions, view = self.extensions(cfg, link, models, self.listen_address(cfg))
        listener = self.listener(cfg, view)
        return Pipeline(cfg, models, pools, cameras, sink, publisher, state, extensions, view,
                        listener), link
