"""Shows: a running daemon's /metrics passes `promtool check metrics`, carries no `_created`
series, and exports at 0 every counter whose label values are known at start; every PromQL
expression of docs/grafana-dashboard.json parses (Prometheus' own parser), names only metrics
the daemon exports, and returns data (Prometheus' query engine, offline) on the series of a
daemon that has not yet seen a frame — no "No data" panels."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from edged.capture.sources.failures import KINDS
from edged.service.metrics import (
    COMMAND_OUTCOMES,
    DROP_REASONS,
    OUTBOX_DROP_REASONS,
    RELOAD_RESULTS,
    TOPIC_CLASSES,
)
from tests.conftest import DEMO, ROOT, write_config
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.promql import (
    dashboard_queries,
    exposition_series,
    label_values_metric,
    metric_names,
    promtool_or_skip,
    rules_file,
    rules_test,
    run_promtool,
    substitute,
)

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


def _get(url: str, accept: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def scrape(tmp_path_factory) -> dict[str, str]:
    """/metrics (text and OpenMetrics) of a daemon whose only camera is an RTSP one that is
    down, so it has seen no frame: every series there is what exists from the start."""
    tmp = tmp_path_factory.mktemp("metrics")
    broker = Mosquitto(tmp).start()
    from edged.app.daemon import Daemon
    from edged.config import load_config

    cfg = {"node_id": "m", "mqtt": {"host": "127.0.0.1", "port": broker.port,
                                    "commands": {"enabled": True}},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt")}},
           "cameras": {"gate": {"source": f"rtsp://127.0.0.1:{free_port()}/none"}},
           "metrics": {"listen": "127.0.0.1:0"}}
    daemon = Daemon(load_config(write_config(tmp / "c.yaml", cfg)), CollectorRegistry())
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="test-daemon")
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "daemon did not serve /metrics with its camera"
            server = daemon.metrics_server
            if server is not None and server.port:
                url = f"http://127.0.0.1:{server.port}/metrics"
                text = _get(url)
                if 'edged_camera_up{camera="gate"}' in text and "edged_mqtt_commands" in text:
                    break
            time.sleep(0.1)
        yield {"text": text, "openmetrics": _get(url, "application/openmetrics-text")}
    finally:
        stop.set()
        runner.join(30)
        broker.stop()


@pytest.fixture(scope="module")
def busy_scrape(tmp_path_factory) -> str:
    """/metrics of a daemon that has classified frames (the demo video, looped, in real time),
    with its stream info and non-empty histograms."""
    tmp = tmp_path_factory.mktemp("busy")
    broker = Mosquitto(tmp).start()
    from edged.app.daemon import Daemon
    from edged.config import load_config

    cfg = {"node_id": "b", "mqtt": {"host": "127.0.0.1", "port": broker.port},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt")}},
           "cameras": {"conveyor": {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                                    "realtime": True}},
           "metrics": {"listen": "127.0.0.1:0"}}
    daemon = Daemon(load_config(write_config(tmp / "c.yaml", cfg)), CollectorRegistry())
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="test-daemon-busy")
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "daemon did not classify 20 frames"
            server = daemon.metrics_server
            if server is not None and server.port:
                text = _get(f"http://127.0.0.1:{server.port}/metrics")
                got = _samples(text).get(("edged_frames_processed_total",
                                          (("camera", "conveyor"),)), 0)
                if got >= 20:
                    break
            time.sleep(0.2)
        yield text
    finally:
        stop.set()
        runner.join(30)
        broker.stop()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_promtool_check_metrics_is_clean(scrape):
    proc = run_promtool("check", "metrics", stdin=scrape["text"])
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
        proc.stdout + proc.stderr)


def test_promtool_check_metrics_is_clean_after_frames(busy_scrape):
    samples = _samples(busy_scrape)
    assert samples[("edged_inference_duration_seconds_count",
                    (("accelerator", "cpu"), ("model", "default")))] >= 20
    assert any(name == "edged_camera_stream_info" for name, _ in samples)
    assert "_created" not in busy_scrape
    proc = run_promtool("check", "metrics", stdin=busy_scrape)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
        proc.stdout + proc.stderr)


def test_no_created_series_in_either_format(scrape):
    assert "_created" not in scrape["text"]
    assert "_created" not in scrape["openmetrics"]
    assert "edged_frames_captured_total" in scrape["openmetrics"]


def test_series_with_labels_known_at_start_are_exported_at_zero(scrape):
    got = _samples(scrape["text"])

    def zero(name: str, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        assert got.get(key) == 0, f"{name}{labels}: {got.get(key)}"

    for name in ("edged_frames_captured_total", "edged_frames_processed_total",
                 "edged_state_changes_total", "edged_camera_up",
                 "edged_capture_to_publish_seconds_count", "edged_frame_age_seconds_count"):
        zero(name, camera="gate")
    for reason in DROP_REASONS:
        zero("edged_frames_dropped_total", camera="gate", reason=reason)
    for kind in KINDS:  # the camera is down: its own kind counts, every other is there at 0
        assert ("edged_source_failures_total", (("camera", "gate"), ("kind", kind))) in got
        assert ("edged_camera_reconnects_total", (("camera", "gate"), ("reason", kind))) in got
    zero("edged_inference_duration_seconds_count", model="default", accelerator="cpu")
    zero("edged_inference_duration_seconds_bucket", model="default", accelerator="cpu",
         le="0.0001")
    for topic_class in TOPIC_CLASSES:
        assert ("edged_mqtt_published_total", (("topic_class", topic_class),)) in got
        zero("edged_mqtt_failed_total", topic_class=topic_class)
    for reason in OUTBOX_DROP_REASONS:
        zero("edged_outbox_dropped_total", reason=reason)
    for result in RELOAD_RESULTS:
        zero("edged_config_reloads_total", result=result)
    for command in ("classify", "state", "unknown"):
        for outcome in COMMAND_OUTCOMES:
            zero("edged_mqtt_commands_total", command=command, outcome=outcome)
    zero("edged_watchdog_pings_total")


def _queries() -> tuple[list[str], list[str]]:
    exprs, variables = dashboard_queries(DASHBOARD)
    assert len(exprs) >= 20 and variables
    return [substitute(e) for e in exprs], variables


def test_dashboard_expressions_parse(tmp_path):
    promtool_or_skip()
    exprs, _ = _queries()
    proc = run_promtool("check", "rules", str(rules_file(tmp_path / "r.yml", exprs)))
    assert proc.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in proc.stdout, (
        proc.stdout + proc.stderr)
    # The check has teeth: one broken expression fails it.
    bad = rules_file(tmp_path / "bad.yml", [*exprs, "sum by (camera (rate(x[5m]))"])
    proc = run_promtool("check", "rules", str(bad))
    assert proc.returncode != 0 and "parse error" in proc.stdout + proc.stderr


def test_dashboard_names_only_exported_metrics(scrape):
    exported = {s.name for f in text_string_to_metric_families(scrape["text"])
                for s in f.samples}
    exprs, variables = _queries()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
    for query in variables:
        assert label_values_metric(query) in exported, query


def test_metric_names_extractor():
    assert metric_names('sum by (le, camera) (rate(a_bucket{x="y{}"}[5m] offset 1m)) / on '
                        '(instance) group_left(foo) b_total > bool 1e3 and c') == {
        "a_bucket", "b_total", "c"}
    assert metric_names("histogram_quantile(0.5, x)") == {"x"}


def test_every_dashboard_expression_has_data_at_start(scrape, tmp_path):
    """Prometheus' engine (promtool test rules) evaluates each expression over the daemon's
    series, held constant for 10 minutes; an alert `absent(expr)` per expression must not
    fire. The negative control: an expression on a metric that is not exported fires."""
    exprs, _ = _queries()
    series = [(s, f"{v:g}+0x40") for s, v in exposition_series(scrape["text"])]
    rules = rules_file(tmp_path / "r.yml", [*exprs, "rate(edged_not_exported_total[5m])"],
                       alert_when_empty=True)
    proc = rules_test(tmp_path, rules, series, [f"Empty{i}" for i in range(len(exprs))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = rules_test(tmp_path, rules, series, [f"Empty{len(exprs)}"])
    assert proc.returncode != 0 and f'Labels:{{alertname="Empty{len(exprs)}"}}' in (
        proc.stdout + proc.stderr)
