"""Prometheus metrics on an injected registry, and the HTTP listener that serves them."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from edged import __version__
from edged.service.httpguard import DROP_REASONS as HTTP_DROP_REASONS
from edged.service.httpguard import BoundedServer, guarded_handler

log = logging.getLogger(__name__)

# Durations from 0.1 ms (a small int8 model invokes in about 0.2 ms on a desktop core) to 10 s
# (a large model on a slow CPU, or a result waiting out a broker outage): five bounds a decade
# (1, 1.5, 2.5, 4, 6), so neighbouring bounds differ by at most 1.67x and a quantile read from
# the buckets is within that of the truth. The same set for every duration, so panels compare.
DURATION_BUCKETS = tuple(round(m * 10.0 ** e, 10) for e in range(-4, 1)
                         for m in (1.0, 1.5, 2.5, 4.0, 6.0)) + (10.0,)

# Label values known before the first event: their series are exported at 0 from the start,
# so dashboards show 0 rather than "no data" (Prometheus cannot rate() a series that is not
# there yet, and a first increment would be lost to rate()).
DROP_REASONS = ("replaced", "fps", "decode", "too_large", "stale", "bad_frame",
                "inference_error", "lag", "region_outside")
TOPIC_CLASSES = ("result", "status", "state", "snapshot", "discovery", "reply", "capture")
OUTBOX_DROP_REASONS = ("full", "expired", "rejected")
FALLBACK_REASONS = ("load_failed", "invoke_failed", "invoke_timeout")
RELOAD_RESULTS = ("applied", "invalid", "failed")
COMMAND_OUTCOMES = ("ok", "error")

# Why a result that took a seq will never reach the broker (each leaves a gap in seq).
LOST_REASONS = ("outbox_full", "fallback_full", "store_damaged", "crash", "shutdown", "expired",
                "rejected", "error")
# Why the outbox file was unusable.
STORE_FAILURE_KINDS = ("full", "readonly", "io", "corrupt", "cantopen", "other")


class Metrics:
    """Every metric edged exports. Each instance owns its registry, so tests get fresh ones."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Info("edged_build", "Version and runtime of this daemon.", registry=r)
        self.frames_captured = Counter("edged_frames_captured_total",
                                       "Frames read from the source.", ["camera"], registry=r)
        self.frames_processed = Counter("edged_frames_processed_total",
                                        "Frames classified.", ["camera"], registry=r)
        self.frames_dropped = Counter("edged_frames_dropped_total",
                                      "Frames not classified, by reason.", ["camera", "reason"],
                                      registry=r)
        self.camera_up = Gauge("edged_camera_up", "1 while the camera's source delivers frames.",
                               ["camera"], registry=r)
        self.source_errors = Counter("edged_source_errors_total",
                                     "Source open or read failures.", ["camera"], registry=r)
        self.inference_seconds = Histogram("edged_inference_duration_seconds",
                                           "Time of one model invoke.", ["model", "accelerator"],
                                           buckets=DURATION_BUCKETS, registry=r)
        self.latency_seconds = Histogram("edged_capture_to_publish_seconds",
                                         "Time from frame capture to result publish.", ["camera"],
                                         buckets=DURATION_BUCKETS, registry=r)
        self.mqtt_connected = Gauge("edged_mqtt_connected", "1 while connected to the broker.",
                                    registry=r)
        self.mqtt_server_switches = Counter(
            "edged_mqtt_server_switches_total", "Moves to the next broker in mqtt.servers "
            "(after a lost connection or a failed attempt).", registry=r)
        self.published = Counter("edged_mqtt_published_total",
                                 "Messages acknowledged by the broker (QoS 0: sent), by class.",
                                 ["topic_class"], registry=r)
        self.outbox_messages = Gauge("edged_outbox_messages",
                                     "Results on disk waiting for the broker's acknowledgement.",
                                     registry=r)
        self.outbox_bytes = Gauge("edged_outbox_bytes", "Payload bytes in the outbox.",
                                  registry=r)
        self.outbox_dropped = Counter("edged_outbox_dropped_total",
                                      "Results removed from the outbox undelivered, by reason "
                                      "(full: oldest dropped; expired; rejected by the broker).",
                                      ["reason"], registry=r)
        self.commands = Counter("edged_mqtt_commands_total", "Commands received, by outcome.",
                                ["command", "outcome"], registry=r)
        self.command_errors = Counter("edged_mqtt_command_errors_total",
                                      "Commands rejected, by reason.", ["reason"], registry=r)
        self.state_changes = Counter("edged_state_changes_total",
                                     "Changes of a camera's smoothed state.", ["camera"],
                                     registry=r)

        self.accelerator_workers = Gauge(
            "edged_accelerator_workers", "Workers of a model running on each backend (the "
            "accelerator, or cpu after a fallback).", ["model", "backend"], registry=r)
        self.accelerator_fallbacks = Counter(
            "edged_accelerator_fallbacks_total", "Switches from the accelerator to the CPU, by "
            "reason (load_failed, invoke_failed, invoke_timeout).", ["model", "reason"],
            registry=r)
        self.source_failures = Counter("edged_source_failures_total",
                                       "Source open or read failures, by kind (unreachable, "
                                       "auth, not_found, decode, timeout, ended, wedged, error).",
                                       ["camera", "kind"], registry=r)
        self.stream_info = Info("edged_camera_stream", "The stream a camera delivers: kind, "
                                "source (credentials redacted), width, height, fps.",
                                ["camera"], registry=r)
        self.camera_lag = Gauge("edged_camera_lag_seconds",
                                "How far behind its stream a camera is: wall time since the "
                                "stream's first frame minus the stream time (pts) since then; "
                                "0 for sources without timestamps.", ["camera"], registry=r)
        self.last_frame_age = Gauge("edged_camera_last_frame_age_seconds",
                                    "Seconds since the camera's last frame (grows while a "
                                    "source is down or hangs).", ["camera"], registry=r)

        # Added for the system service (issue 6): completeness for dashboards and alerts.
        self.camera_reconnects = Counter("edged_camera_reconnects_total",
                                         "Source reconnects, by reason.", ["camera", "reason"],
                                         registry=r)
        self.frame_age_seconds = Histogram("edged_frame_age_seconds",
                                           "Age of a frame when a worker takes it.", ["camera"],
                                           buckets=DURATION_BUCKETS, registry=r)
        self.mqtt_failed = Counter("edged_mqtt_failed_total",
                                   "Messages the client could not send, by class.",
                                   ["topic_class"], registry=r)
        self.mqtt_connection_failures = Counter(
            "edged_mqtt_connection_failures_total", "Broker connections that failed or ended, "
            "by reason (unreachable, refused, protocol, closed_before_connack, lost, "
            "dropped_after_publish).", ["reason"], registry=r)
        self.outbox_oldest_seconds = Gauge("edged_outbox_oldest_age_seconds",
                                           "Age of the oldest unacknowledged message.",
                                           registry=r)
        self.model_info = Gauge("edged_model_info", "1 per loaded model: its file digest and "
                                "accelerator.", ["model", "sha256", "accelerator"], registry=r)
        self.ready = Gauge("edged_ready", "1 while /readyz reports ready.", registry=r)
        self.backend_fast_path = Gauge(
            "edged_backend_fast_path", "1 when the model's CPU backend has its fast path (the "
            "XNNPACK delegate), 0 when it runs the slow reference kernels.", ["model"],
            registry=r)
        self.reloads = Counter("edged_config_reloads_total",
                               "SIGHUP reloads, by result (applied, invalid, failed).",
                               ["result"], registry=r)
        # Issue 12: a lost result is never silent; the outbox never stops the pipeline.
        self.results_lost = Counter(
            "edged_results_lost_total", "Results that took a seq but will never be delivered, "
            "by reason (outbox_full: oldest dropped from the file; fallback_full: oldest "
            "dropped from memory while the file was unusable; store_damaged: unreadable rows "
            "of a damaged file; crash: seqs skipped after an unclean stop that may have lost "
            "the file's newest rows; shutdown: only in memory at exit; expired; rejected by "
            "the broker; error).", ["reason"], registry=r)
        self.outbox_healthy = Gauge("edged_outbox_healthy", "1 while the outbox file takes "
                                    "writes; 0 while results are kept in memory only.",
                                    registry=r)
        self.outbox_healthy.set(1)  # no outbox, or not opened yet: nothing wrong known
        self.outbox_fallback_messages = Gauge(
            "edged_outbox_fallback_messages", "Results kept in memory because the outbox file "
            "is unusable.", registry=r)
        self.outbox_store_failures = Counter(
            "edged_outbox_store_failures_total", "Episodes of an unusable outbox file, by kind "
            "(full, readonly, io, corrupt, cantopen, other).", ["kind"], registry=r)
        self.outbox_moved_aside = Counter("edged_outbox_moved_aside_total",
                                          "Damaged outbox files moved aside at start.",
                                          registry=r)
        self.watchdog_pings = Counter("edged_watchdog_pings_total",
                                      "WATCHDOG=1 notifications sent to systemd.", registry=r)
        self.http_dropped = Counter(
            "edged_http_connections_dropped_total", "HTTP listener connections closed by edged, "
            "by reason (idle, write_timeout, gone, busy).", ["reason"], registry=r)
        # What /metrics serves: the registry without the `_created` series (see _NoCreated).
        self.exposed = CollectorRegistry(auto_describe=False)
        self.exposed.register(_NoCreated(r))
        self._declare_fixed()

    def _declare_fixed(self) -> None:
        """The series whose label values do not depend on the config, at 0."""
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        for topic_class in TOPIC_CLASSES:
            self.published.labels(topic_class)
            self.mqtt_failed.labels(topic_class)
        for reason in OUTBOX_DROP_REASONS:
            self.outbox_dropped.labels(reason)
        for reason in HTTP_DROP_REASONS:
            self.http_dropped.labels(reason)
        for reason in LOST_REASONS:
            self.results_lost.labels(reason)
        for kind in STORE_FAILURE_KINDS:
            self.outbox_store_failures.labels(kind)

    def declare_camera(self, camera: str, failure_kinds: Iterable[str]) -> None:
        """A camera's series at 0 (and its gauges at "down") before its first frame."""
        for reason in DROP_REASONS:
            self.frames_dropped.labels(camera, reason)
        for counter in (self.frames_captured, self.frames_processed, self.source_errors,
                        self.state_changes):
            counter.labels(camera)
        for kind in failure_kinds:
            self.camera_reconnects.labels(camera, kind)
            self.source_failures.labels(camera, kind)
        self.camera_up.labels(camera)
        self.latency_seconds.labels(camera)
        self.frame_age_seconds.labels(camera)

    def declare_model(self, model: str, backend: str, accelerator: str | None) -> None:
        """A model's inference histogram (by the backend its workers report) and, with an
        accelerator, its fallback counters, at 0."""
        self.inference_seconds.labels(model, backend)
        if accelerator is not None:
            for reason in FALLBACK_REASONS:
                self.accelerator_fallbacks.labels(model, reason)

    def declare_commands(self, commands: Iterable[str]) -> None:
        for command in (*commands, "unknown"):
            for outcome in COMMAND_OUTCOMES:
                self.commands.labels(command, outcome)

    def set_build(self, runtime: str) -> None:
        self.build_info.info({"version": __version__, "runtime": runtime})


class _NoCreated(Collector):
    """A registry's metrics without their `_created` samples.

    prometheus_client exports, per counter and histogram series, a `_created` timestamp that
    Prometheus stores as one more series and no edged panel uses. The library's switch,
    `disable_created_metrics()`, is a process-global flag (it would change every other
    registry in the process, e.g. a test's or an embedding application's); filtering here
    keeps it to edged's own /metrics.
    """

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        """The source's metric names, so `?name[]=` queries find this collector."""
        return [Metric(m.name, m.documentation, m.type, m.unit) for m in self._source.collect()]

    def collect(self) -> Iterator[Metric]:
        for metric in self._source.collect():
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield kept


class _Server6(BoundedServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves /metrics and /healthz in a named thread; stop() closes the socket."""

    def __init__(self, metrics: Metrics, host: str, port: int,
                 readiness: Callable[[], dict] | None = None,
                 mounts: list[tuple[Callable[[str], bool], Callable]] | None = None,
                 request_timeout_s: float = 10.0, write_timeout_s: float = 10.0,
                 max_connections: int = 64) -> None:
        self._metrics, self._host, self._port = metrics, host, port
        # No client can hold a thread: see edged.service.httpguard.
        self._request_timeout_s, self._write_timeout_s = request_timeout_s, write_timeout_s
        self._max_connections = max_connections
        self._readiness = readiness  # -> {"ready": bool, "problems": [...], ...}
        self._server: BoundedServer | None = None
        self._thread: threading.Thread | None = None
        # Other WSGI apps on this listener (e.g. the live view): (path predicate, app).
        self._mounts = list(mounts or [])

    def start(self) -> None:
        metrics_app = make_wsgi_app(self._metrics.exposed)

        def app(environ, start_response):  # noqa: ANN001, ANN202 - WSGI signature
            if environ.get("PATH_INFO") == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if environ.get("PATH_INFO") == "/readyz" and self._readiness is not None:
                body = self._readiness()
                status = "200 OK" if body.get("ready") else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(body).encode() + b"\n"]
            return metrics_app(environ, start_response)

        app = self._mounted(app)
        cls = _Server6 if ":" in self._host else BoundedServer
        dropped = self._metrics.http_dropped

        def on_drop(reason: str) -> None:
            dropped.labels(reason).inc()
            log.debug("http: dropped a connection (%s)", reason)

        handler = guarded_handler(self._request_timeout_s, self._write_timeout_s, on_drop)
        self._server = cls((self._host, self._port), handler, self._max_connections, on_drop)
        self._server.set_app(app)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.5}, name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self._port

    def _mounted(self, fallback: Callable) -> Callable:
        def app(environ, start_response):
            path = environ.get("PATH_INFO") or "/"
            for handles, mounted in self._mounts:
                if handles(path):
                    return mounted(environ, start_response)
            return fallback(environ, start_response)
        return app

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
