"""The metrics' own promises, on a fresh registry each: no `_created` series on what /metrics
serves (without touching prometheus_client's process-global switch), and the series whose label
values are known at start exported at 0."""

from __future__ import annotations

import prometheus_client.metrics as client_metrics
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from edged.service.metrics import (
    COMMAND_OUTCOMES,
    DROP_REASONS,
    FALLBACK_REASONS,
    OUTBOX_DROP_REASONS,
    RELOAD_RESULTS,
    TOPIC_CLASSES,
    Metrics,
)


def _metrics() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.frames_captured.labels("c").inc()
    m.inference_seconds.labels("a", "cpu").observe(0.0002)
    return m


def test_exposed_registry_has_no_created_series_in_either_format():
    m = _metrics()
    for text in (generate_latest(m.exposed), generate_openmetrics(m.exposed)):
        assert b"_created" not in text
        assert b'edged_frames_captured_total{camera="c"} 1.0' in text
    assert b"_created" in generate_latest(m.registry)  # filtered on the way out only


def test_the_process_global_switch_is_left_alone():
    before = client_metrics._use_created
    _metrics()
    assert client_metrics._use_created is before
    other = CollectorRegistry()  # another registry in the same process keeps its _created
    Counter("other_total", "x", registry=other).inc()
    assert (b"other_created" in generate_latest(other)) is before


def test_exposed_answers_name_queries():
    m = _metrics()
    text = generate_latest(m.exposed.restricted_registry(["edged_frames_captured_total"]))
    assert b'edged_frames_captured_total{camera="c"} 1.0' in text and b"inference" not in text


def _get(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_fixed_label_values_exist_at_zero_from_construction():
    m = Metrics(CollectorRegistry())
    for topic_class in TOPIC_CLASSES:
        assert _get(m, "edged_mqtt_published_total", topic_class=topic_class) == 0
        assert _get(m, "edged_mqtt_failed_total", topic_class=topic_class) == 0
    for reason in OUTBOX_DROP_REASONS:
        assert _get(m, "edged_outbox_dropped_total", reason=reason) == 0
    for result in RELOAD_RESULTS:
        assert _get(m, "edged_config_reloads_total", result=result) == 0
    assert _get(m, "edged_watchdog_pings_total") == 0


def test_declare_camera():
    m = Metrics(CollectorRegistry())
    assert _get(m, "edged_frames_processed_total", camera="gate") is None
    m.declare_camera("gate", ("unreachable", "auth"))
    for reason in DROP_REASONS:
        assert _get(m, "edged_frames_dropped_total", camera="gate", reason=reason) == 0
    for name in ("edged_frames_captured_total", "edged_frames_processed_total",
                 "edged_source_errors_total", "edged_state_changes_total", "edged_camera_up",
                 "edged_capture_to_publish_seconds_count", "edged_frame_age_seconds_count"):
        assert _get(m, name, camera="gate") == 0, name
    for kind in ("unreachable", "auth"):
        assert _get(m, "edged_source_failures_total", camera="gate", kind=kind) == 0
        assert _get(m, "edged_camera_reconnects_total", camera="gate", reason=kind) == 0
    assert _get(m, "edged_capture_to_publish_seconds_bucket", camera="gate", le="0.0001") == 0


def test_declare_model_and_commands():
    m = Metrics(CollectorRegistry())
    m.declare_model("cpu_only", "cpu", None)
    m.declare_model("tpu", "cpu", "edgetpu")
    assert _get(m, "edged_inference_duration_seconds_count", model="cpu_only",
                accelerator="cpu") == 0
    for reason in FALLBACK_REASONS:
        assert _get(m, "edged_accelerator_fallbacks_total", model="tpu", reason=reason) == 0
        assert _get(m, "edged_accelerator_fallbacks_total", model="cpu_only",
                    reason=reason) is None  # no accelerator: nothing to fall back from
    m.declare_commands(("classify", "state"))
    for command in ("classify", "state", "unknown"):
        for outcome in COMMAND_OUTCOMES:
            assert _get(m, "edged_mqtt_commands_total", command=command, outcome=outcome) == 0
