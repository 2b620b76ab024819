"""The daemon: builds the pipeline from a config (build), starts and stops it in tiers
(lifecycle), answers how it is (health), and applies a new config (reload)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from edged.app.build import Builder, Pipeline, SinkFactory, mqtt_sink
from edged.app.cameras import CameraSet
from edged.app.events import Events
from edged.app.health import Health, HealthReport, Problem, Progress, Rate, status_text
from edged.app.lifecycle import Lifecycle
from edged.app.reload import Reloader, diff_configs
from edged.capture.camera import Camera
from edged.config import Config, load_config
from edged.errors import ConfigError, EdgedError
from edged.inference.worker import WorkerPool
from edged.model.runtime import find_runtime
from edged.mqtt.contract import Topics
from edged.mqtt.link import MqttLink
from edged.service.metrics import Metrics, MetricsServer
from edged.service.notify import Notifier, Watchdog, watchdog_interval
from edged.service.reloadwait import ReloadStatusFile
from edged.sinks.base import Sink
from edged.web.server import LiveView

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, cfg: Config, registry: CollectorRegistry | None = None,
                 config_path: str | None = None, notifier: Notifier | None = None,
                 environ: Mapping[str, str] | None = None,
                 sink_factory: SinkFactory = mqtt_sink) -> None:
        self.cfg = cfg
        self.config_path = config_path  # re-read on reload (SIGHUP)
        self.metrics = Metrics(registry)
        self.notifier = notifier if notifier is not None else Notifier(None)
        self._environ = environ if environ is not None else {}
        self.events = Events()
        self.camera_set = CameraSet()
        self._reload_status = ReloadStatusFile.from_env(self._environ)  # `edged reload-wait`
        self._applied = ("failed", "")  # the last apply(): result and reason
        self.progress = Progress()
        self.lifecycle = Lifecycle()
        self.builder = Builder(self.metrics, self.events, self.camera_set, self.progress,
                               self.readiness, sink_factory)
        self.health = Health(lambda: self.camera_set, self.progress, self._running_models,
                             self._mqtt_state, self._outbox_count,
                             checks=[self._mqtt_problems, self._outbox_problems])
        self.pipeline: Pipeline | None = None
        self.link: MqttLink | None = None
        self._watchdog: Watchdog | None = None
        self._rate = Rate()
        self._ready = False

    # --- what tests and tools read ----------------------------------------------------------

    @property
    def cameras(self) -> list[Camera]:
        return list(self.camera_set)

    @property
    def pools(self) -> dict[str, WorkerPool]:
        return self.pipeline.pools if self.pipeline is not None else {}

    @property
    def sink(self) -> Sink | None:
        return self.link.sink if self.link is not None else None

    @property
    def metrics_server(self) -> MetricsServer | None:
        return self.pipeline.listener if self.pipeline is not None else None

    @property
    def live_view(self) -> LiveView | None:
        return self.pipeline.live_view if self.pipeline is not None else None

    @property
    def ready(self) -> bool:
        """Started (models loaded, sources set up); /readyz says whether all is well."""
        return self._ready

    @property
    def finished(self) -> bool:
        """Every camera is finite and has ended."""
        cameras = self.cameras
        return bool(cameras) and all(c.finished.is_set() for c in cameras)

    # --- health -----------------------------------------------------------------------------

    def _running_models(self) -> list[str]:
        return list(self.pools)

    def _mqtt_state(self) -> tuple[bool, str]:
        sink = self.sink
        where = getattr(sink, "server_description", None)  # with mqtt.servers: which one
        return (sink is not None and sink.connected,
                where or f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}")

    def _mqtt_problems(self) -> list[Problem]:
        """A broker that answers but refuses, or drops the connection after publishes."""
        why = getattr(self.sink, "connection_problem", None)
        return [Problem("mqtt", "refused", why)] if why else []

    def _outbox_count(self) -> int:
        sink = self.sink
        return sink.outbox_stats()[0] if sink is not None else 0

    def _outbox_problems(self) -> list[Problem]:
        """A degraded outbox (results only in memory) is not ready, with the reason."""
        outbox = getattr(self.sink, "outbox", None)  # the MQTT sink's; other sinks have none
        why = outbox.degraded_reason() if outbox is not None else None
        return [Problem("outbox", "degraded", why)] if why else []

    def check(self) -> HealthReport:
        report = self.health.check(self._ready)
        self.metrics.ready.set(1 if report.ready else 0)
        return report

    def readiness(self) -> dict:
        """The /readyz body: ready, and what is not."""
        return self.check().readiness()

    def status(self) -> str:
        return status_text(self.check(), self._rate.update(self.progress.total()))

    def _recover_wedged(self) -> None:
        for camera in self.cameras:
            camera.recover_if_wedged()

    def _watchdog_problems(self) -> list[str]:
        self._recover_wedged()  # before judging: a camera that can be reopened is no hang
        problems = [str(p) for p in self.check().wedged]
        if not problems:
            self.metrics.watchdog_pings.inc()
        return problems

    def _watch_outbox(self) -> None:
        def stats() -> tuple[int, int, float]:
            sink = self.sink
            return sink.outbox_stats() if sink is not None else (0, 0, 0.0)

        self.metrics.outbox_messages.set_function(lambda: stats()[0])
        self.metrics.outbox_bytes.set_function(lambda: stats()[1])
        self.metrics.outbox_oldest_seconds.set_function(lambda: stats()[2])

    # --- start and stop ---------------------------------------------------------------------

    def _link_for(self, sink: Sink, topics: Topics) -> MqttLink:
        if self.link is None:
            self.link = MqttLink(sink, topics)
        return self.link

    def start(self) -> None:
        """Start everything, or stop what started and raise EdgedError."""
        runtime = find_runtime()
        self.metrics.set_build(str(runtime))
        log.info("edged on %s, node %s", runtime, self.cfg.node_id)
        pipeline, link = self.builder.pipeline(self.cfg, self._link_for)
        self.pipeline = pipeline
        for camera in pipeline.cameras:
            self.camera_set.add(camera, pipeline.models[camera.cfg.model])
            self.progress.started(camera.name)
        self._watch_outbox()
        try:
            self.lifecycle.start(pipeline.tiers())
        except OSError as exc:
            raise EdgedError(f"metrics.listen: cannot listen on {self.cfg.metrics.listen}: "
                             f"{exc.strerror or exc}") from None
        # The sink connects in the background and may have greeted the broker before the
        # extensions joined "broker connected": then greet once more, so that states and
        # discovery follow an `online` too. (A greeting begun later sees every extension.)
        if getattr(link.sink, "greetings", 0):
            link.request_greet()
        self._ready = True
        # Models loaded and sources set up; the broker may still be connecting.
        self.notifier.ready(self.status())
        interval = watchdog_interval(self._environ, os.getpid())
        if interval is not None and self.notifier.enabled:
            self._watchdog = Watchdog(self.notifier, interval, self._watchdog_problems)
            self._watchdog.start()

    def stop(self) -> None:
        """Stop in reverse: capture, then workers finish, then publish, then MQTT."""
        if self._ready:
            self.notifier.stopping()
            self._ready = False
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        self.lifecycle.stop()

    def run(self, stop: threading.Event, reload: threading.Event | None = None,
            status_every_s: float = 5.0) -> None:
        """Start, run until `stop` is set or every finite source has ended, then stop.
        When `reload` is set (SIGHUP), re-read the config file and apply the difference."""
        try:
            self.start()
            next_status = time.monotonic() + status_every_s
            while not stop.wait(0.2):
                self._recover_wedged()
                if self.finished:
                    log.info("all sources ended; finishing")
                    break
                if reload is not None and reload.is_set():
                    reload.clear()
                    self.reload()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + status_every_s
                    self.notifier.status(self.status())  # also keeps edged_ready current
        finally:
            self.stop()
        log.info("stopped")

    # --- hot reload (SIGHUP) ----------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; apply what changed, or keep running on the old config."""
        self.notifier.reloading()
        started = time.monotonic_ns()
        outcome = ("failed", "an unexpected error (see the log)")
        try:
            if self.config_path is None:
                outcome = ("failed", "no config file to re-read")
                log.error("reload: %s", outcome[1])
                return False
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                for line in exc.lines:
                    log.error("reload: %s", line)
                log.error("reload: invalid config; still running on the previous one")
                self.metrics.reloads.labels("invalid").inc()
                outcome = ("invalid", exc.lines[0] if exc.lines else "invalid config")
                return False
            except Exception as exc:  # noqa: BLE001 - no config file may stop the daemon
                log.error("reload: cannot load %s: %s: %s; still running on the previous "
                          "config", self.config_path, type(exc).__name__, str(exc)[:200])
                self.metrics.reloads.labels("invalid").inc()
                outcome = ("invalid", f"cannot load {self.config_path}: {type(exc).__name__}")
                return False
            for note in new.notes:
                log.warning("reload: config: %s", note)
            ok = self.apply(new)
            outcome = self._applied
            return ok
        finally:
            self.notifier.ready(self.status())
            self._reload_status.write(started, *outcome)

    def apply(self, new: Config) -> bool:
        """Apply a validated config to the running pipeline."""
        assert self.pipeline is not None and self.link is not None
        diff = diff_configs(self.cfg, new)
        reloader = Reloader(self.builder, self.lifecycle, self.camera_set, self.progress,
                            self.link)
        try:
            self.pipeline = reloader.apply(self.pipeline, new, diff)
        except EdgedError as exc:
            log.error("reload: %s; still running on the previous config", exc)
            self.metrics.reloads.labels("failed").inc()
            self._applied = ("failed", str(exc))
            return False
        self.cfg = new
        self._applied = ("applied", diff.summary())
        log.info("reload: applied (%s)", diff.summary())
        self.metrics.reloads.labels("applied").inc()
        return True
