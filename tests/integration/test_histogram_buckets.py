"""Shows: the duration histograms resolve what they measure. Invokes of 0.2 ms (a small int8
model) and 7 ms (MobileNet v2 on one core) go through edged's real histograms; Prometheus' own
`histogram_quantile` (promtool test rules, offline) reads p50 and p95 back within one bucket's
ratio (1.67x) of the true quantiles. The buckets edged had before (from 1 ms) fail the same
check for the small model: the control that the check can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from edged.service.metrics import DURATION_BUCKETS, Metrics
from tests.helpers.promql import exposition_series, promtool_or_skip, rules_test

OLD_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2,
               0.5, 1.0, 2.5, 5.0, 10.0)
RATIO = 1.67


def test_buckets_span_0_1_ms_to_10_s_with_bounded_steps():
    assert DURATION_BUCKETS[0] == 0.0001 and DURATION_BUCKETS[-1] == 10.0
    steps = np.array(DURATION_BUCKETS[1:]) / np.array(DURATION_BUCKETS[:-1])
    assert steps.min() > 1 and steps.max() <= RATIO


def _observations() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(15)
    return {"small": rng.uniform(0.00018, 0.00026, 400),
            "mobilenet": rng.uniform(0.0062, 0.0075, 400)}


def _alerts_file(path: Path, truths: dict[str, dict[float, float]], metric: str) -> Path:
    import yaml

    rules = []
    for model, qs in truths.items():
        for q, truth in qs.items():
            est = (f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket"
                   f'{{model="{model}"}}[5m])))')
            rules.append({"alert": f"Off_{model}_{int(q * 100)}",
                          "expr": f"{est} > {truth * RATIO} or {est} < {truth / RATIO}"})
    path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    return path


def _run(tmp_path: Path, text: str, metric: str) -> tuple[int, str]:
    obs = _observations()
    truths = {m: {q: float(np.quantile(v, q)) for q in (0.5, 0.95)} for m, v in obs.items()}
    # Counters grow linearly over 10 minutes to what the histogram holds.
    series = [(s, f"0+{v / 40:g}x40") for s, v in exposition_series(text)]
    rules = _alerts_file(tmp_path / "q.yml", truths, metric)
    alerts = [f"Off_{m}_{int(q * 100)}" for m in truths for q in truths[m]]
    proc = rules_test(tmp_path, rules, series, alerts)
    return proc.returncode, proc.stdout + proc.stderr


def test_quantiles_of_sub_millisecond_invokes_are_resolved(tmp_path):
    promtool_or_skip()
    metrics = Metrics(CollectorRegistry())
    for model, values in _observations().items():
        for v in values:
            metrics.inference_seconds.labels(model, "cpu").observe(float(v))
    rc, out = _run(tmp_path, generate_latest(metrics.exposed).decode(),
                   "edged_inference_duration_seconds")
    assert rc == 0, out


def test_the_old_buckets_do_not_resolve_them(tmp_path):
    promtool_or_skip()
    registry = CollectorRegistry()
    old = Histogram("old_seconds", "", ["model"], buckets=OLD_BUCKETS, registry=registry)
    for model, values in _observations().items():
        for v in values:
            old.labels(model).observe(float(v))
    rc, out = _run(tmp_path, generate_latest(registry).decode(), "old_seconds")
    assert rc != 0 and 'Labels:{alertname="Off_small_50"}' in out


@pytest.mark.parametrize("name", ["latency_seconds", "frame_age_seconds", "inference_seconds"])
def test_every_duration_histogram_uses_the_buckets(name):
    metrics = Metrics(CollectorRegistry())
    assert tuple(getattr(metrics, name)._upper_bounds[:-1]) == DURATION_BUCKETS
