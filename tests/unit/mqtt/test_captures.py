"""Evidence captures: the pure parts (rules, rate caps, names, retention) and the Capturer with
an injected clock, on real files in a temporary folder (no broker, no model)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edged.app.events import Events, ResultPublished, StateChanged
from edged.config import CaptureConfig, CaptureRulesConfig
from edged.frame import Frame
from edged.mqtt.contract import Topics
from edged.mqtt.extensions.captures import (
    CaptureMetrics,
    Capturer,
    Entry,
    active_rules,
    TokenBucket,
    capture_root,
    capture_stem,
    charge,
    disk_need,
    folder_name,
    rest_after,
    matched_rules,
    retention_plan,
    scan,
    stem_time,
    unknown_labels,
)
from edged.tools.captures import parse_time, select
from tests.helpers.schemas import validate

MiB = 1024 * 1024


def rules(**kw) -> CaptureRulesConfig:  # noqa: ANN003
    return CaptureRulesConfig(**kw)


def test_rules_match_label_state_uncertain_and_sample_in_charging_order():
    r = rules(labels=["dented"], states=["dented"], below_score=0.6, sample=0.1)
    assert matched_rules(r, "dented", 0.9, None, 0.5) == ("labels",)
    assert matched_rules(r, "dented", 0.5, "dented", 0.05) == (
        "labels", "states", "below_score", "sample")
    assert matched_rules(r, "ok", 0.99, "ok", 0.5) == ()  # a state not in the list
    assert matched_rules(r, "ok", 0.59, None, 0.5) == ("below_score",)
    assert matched_rules(r, "ok", 0.6, None, 0.099) == ("sample",)  # strictly below
    off = rules()
    assert not off.enabled and matched_rules(off, "ok", 0.0, "ok", 0.0) == ()
    assert rules(sample=0.5).enabled and rules(below_score=0.1).enabled


def test_active_rules_and_their_series_start_at_zero(tmp_path):
    assert active_rules(rules(labels=["a"], sample=0.1)) == ["labels", "sample"]
    assert active_rules(rules()) == []
    cap = make(tmp_path, Clock())
    cap.on_result("cam", None, result(0, "ok", 0.9, 0.0))  # first sight of the camera
    assert cap.metrics.written.labels("cam", "states")._value.get() == 0  # noqa: SLF001
    assert ("cam", "labels", "queue_full") in cap.metrics.dropped._metrics  # noqa: SLF001


def test_token_bucket_allows_ten_seconds_worth_then_refills_at_the_rate():
    b = TokenBucket(60)  # one a second
    assert sum(b.take(100.0) for _ in range(100)) == 10
    assert not b.take(100.5)
    assert b.take(101.0) and not b.take(101.0)
    assert sum(b.take(1000.0) for _ in range(100)) == 10  # never more than 10 s' worth
    slow = TokenBucket(1)  # one a minute: still one at once
    assert slow.take(0.0) and not slow.take(30.0) and slow.take(60.0)


def test_charge_takes_the_first_rule_with_room():
    buckets = {"labels": TokenBucket(6), "sample": TokenBucket(6)}  # one at once each
    assert charge(buckets, ("labels", "sample"), 0.0) == "labels"
    assert charge(buckets, ("labels", "sample"), 0.0) == "sample"
    assert charge(buckets, ("labels", "sample"), 0.0) is None


def test_unknown_labels_allow_unknown_as_a_state_only():
    r = rules(labels=["dented", "bent"], states=["unknown", "gone"])
    assert unknown_labels(r, ["ok", "dented"]) == ["bent", "gone"]
    assert unknown_labels(rules(labels=["unknown"]), ["ok"]) == ["unknown"]


def test_stem_round_trips_time_and_sorts_by_time():
    ts = 1796148600.8586
    stem = capture_stem(ts, 42)
    assert stem == "20261201T181000.859Z_42"
    assert stem_time(stem) == pytest.approx(1796148600.859)
    assert stem_time("holiday") is None
    assert capture_stem(ts, 9) < capture_stem(ts + 0.001, 10)


def entry(ts: float, size: int, name: str = "") -> Entry:
    return Entry(ts, "cam", "ok", name or f"e{ts}", (f"/x/{ts}.jpg",), size)


def test_retention_deletes_too_old_then_oldest_beyond_size():
    now = 10_000.0
    entries = [entry(100, 10), entry(9000, 10), entry(9500, 10), entry(9900, 10)]
    plan = retention_plan(entries, max_bytes=25, max_age_s=5000, now=now)
    assert [(e.ts, why) for e, why in plan] == [(100, "age"), (9000, "size")]
    assert retention_plan(entries, 1000, 1e9, now) == []
    # Room for what is about to be written: 40 on disk + 15 reserved > 50.
    assert [e.ts for e, _ in retention_plan(entries, 50, 1e9, now, reserve=15)] == [100]
    assert len(retention_plan(entries, 0, 1e9, now)) == 4


def test_cpu_budget_rest():
    assert rest_after(0.001, 0.2) == pytest.approx(0.004)  # 1 ms of work in every 5 ms
    assert rest_after(0.001, 1.0) == 0 and rest_after(0.0, 0.2) == 0
    assert rest_after(10.0, 0.2) == 1.0  # bounded: never a long sleep


def test_labels_become_safe_folder_names():
    assert folder_name("dented") == "dented"
    assert folder_name("African elephant, Loxodonta africana") == \
        "African elephant, Loxodonta africana"  # commas and spaces are fine in a folder
    assert folder_name("a/b") == "a_b" and folder_name("..") == "_.." and folder_name(" ") == "_"


def test_disk_need_counts_whole_blocks_and_new_folders():
    assert disk_need([1, 4096, 4097], 4096, new_dirs=0) == 4 * 4096
    assert disk_need([0], 4096) == 3 * 4096


def test_capture_root_follows_the_state_directory():
    assert capture_root(CaptureConfig(dir="/srv/x"), {}) == "/srv/x"
    assert capture_root(CaptureConfig(), {"STATE_DIRECTORY": "/var/lib/e:/other"}) == \
        "/var/lib/e/captures"
    assert capture_root(CaptureConfig(), {}) == "/var/lib/edged/captures"


def test_time_arguments_and_selection():
    now = 1_000_000.0
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1796148600", now) == 1796148600
    assert parse_time("2026-12-01T18:10:00Z", now) == 1796148600
    entries = [Entry(10, "a", "ok", "s1", ("p",), 1), Entry(20, "b", "dented", "s2", ("p",), 1)]
    assert [e.ts for e in select(entries, since=15)] == [20]
    assert [e.ts for e in select(entries, labels=["ok"])] == [10]
    assert [e.ts for e in select(entries, cameras=["b"], until=15)] == []


# --- the Capturer on real files ---------------------------------------------------------------

class Clock:
    def __init__(self, t: float = 1_796_148_600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeLink:
    """Records announcements (the real link is tested against mosquitto in integration)."""

    topics = Topics("edged", "n")

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def publish_now(self, msg) -> bool:  # noqa: ANN001 - contract.Message
        assert msg.kind == "capture" and not msg.retain
        self.sent.append((msg.topic, json.loads(msg.payload)))
        return True


def result(seq: int, label: str, score: float, ts: float) -> dict:
    return {"node_id": "n", "camera": "cam", "seq": seq, "frame": seq, "ts": ts,
            "model": "default", "label": label, "index": 0, "score": score,
            "top_k": [{"label": label, "index": 0, "score": score}],
            "inference_ms": 1.0, "latency_ms": 2.0}


def frame(seq: int, ts: float, roi: bool = False) -> Frame:
    rng = np.random.default_rng(seq)  # noise: JPEGs of a realistic size
    full = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return Frame(image=full, index=seq, ts=ts, mono=time.monotonic(),
                 box=(20, 10, 80, 60) if roi else None)


def make(tmp_path: Path, clock: Clock, link=None, per_minute: float = 60,  # noqa: ANN001
         events: Events | None = None, **cfg) -> Capturer:  # noqa: ANN003
    cfg.setdefault("min_free_bytes", 0)
    camera_rules = {"cam": rules(labels=["dented"], states=["missing"],
                                 max_per_minute=per_minute)}
    return Capturer(CaptureConfig(dir=str(tmp_path / "caps"), **cfg), camera_rules.get,
                    CaptureMetrics(CollectorRegistry()), link, events,
                    lambda _: ["ok", "dented", "missing"], clock=clock, rand=lambda: 0.5)


def _sample(cap: Capturer, name: str, labels: dict | None) -> float:
    for metric in (cap.metrics.written, cap.metrics.dropped, cap.metrics.pruned,
                   cap.metrics.stored, cap.metrics.bytes, cap.metrics.paused,
                   cap.metrics.unknown_labels):
        for fam in metric.collect():
            for s in fam.samples:
                if s.name == name and s.labels == (labels or {}):
                    return s.value
    return 0.0


def test_capturer_writes_jpeg_and_schema_valid_sidecar_and_caps_the_rate(tmp_path):
    clock, sink = Clock(), FakeLink()
    cap = make(tmp_path, clock, sink)
    cap.start()
    try:
        queued = [cap.on_result("cam", frame(i, clock.t + i / 100), result(
            i, "dented" if i % 2 else "ok", 0.9, clock.t + i / 100)) for i in range(30)]
        assert cap.idle(10)
    finally:
        cap.stop()
    assert queued.count("labels") == 10  # 15 dented results; 60 a minute: 10 at once
    assert queued.count(None) == 20
    assert _sample(cap, "edged_captures_total", {"camera": "cam", "rule": "labels"}) == 10
    assert _sample(cap, "edged_captures_dropped_total",
                   {"camera": "cam", "rule": "labels", "reason": "rate"}) == 5
    jpgs = sorted((tmp_path / "caps" / "cam" / "dented").glob("*.jpg"))
    assert len(jpgs) == 10 and not (tmp_path / "caps" / "cam" / "ok").exists()
    for jpg in jpgs:
        doc = json.loads(jpg.with_suffix(".json").read_text())
        validate("capture", doc)
        assert doc["image"] == f"cam/dented/{jpg.name}" and doc["full_image"] is None
        assert doc["bytes"] == jpg.stat().st_size
    assert [t for t, _ in sink.sent] == ["edged/n/cam/capture"] * 10
    for _, doc in sink.sent:
        validate("capture", doc)
    assert cap.latest("cam")[0]["seq"] == 19  # newest first
    entries, temps = scan(str(tmp_path / "caps"))
    assert len(entries) == 10 and temps == []


def test_roi_camera_keeps_the_region_in_the_class_folder_and_the_frame_beside(tmp_path):
    clock = Clock()
    cap = make(tmp_path, clock)
    cap.start()
    try:
        cap.on_result("cam", frame(1, clock.t, roi=True), result(1, "dented", 0.9, clock.t))
        assert cap.idle(10)
    finally:
        cap.stop()
    doc = json.loads(next((tmp_path / "caps" / "cam" / "dented").glob("*.json")).read_text())
    validate("capture", doc)
    assert (doc["width"], doc["height"]) == (80, 60)
    assert doc["full_image"].startswith(".full/cam/dented/")
    assert (tmp_path / "caps" / doc["full_image"]).is_file()
    (e,), _ = scan(str(tmp_path / "caps"))
    assert len(e.paths) == 3  # image, sidecar, whole frame: deleted together


def test_retention_by_size_and_age_on_real_files(tmp_path):
    clock = Clock()
    cap = make(tmp_path, clock, per_minute=1e6, max_bytes=MiB, max_age_days=1)
    cap.start()
    try:
        for i in range(40):  # ~70 KB each: more than 1 MiB in all
            cap.on_result("cam", frame(i, clock.t), result(i, "dented", 0.9, clock.t + i))
        assert cap.idle(20)
        entries, _ = scan(cap.root)
        total = sum(e.bytes for e in entries)
        assert total <= MiB and len(entries) < 40
        assert [e.stem for e in entries] == sorted(e.stem for e in entries)
        assert entries[-1].stem.endswith("_39")  # the oldest went first
        assert _sample(cap, "edged_capture_bytes", None) == total
        assert _sample(cap, "edged_captures_pruned_total", {"reason": "size"}) == 40 - len(
            entries)
        clock.t += 2 * 86400  # two days later every capture is too old
        cap._next_age_check = 0  # noqa: SLF001 - the writer checks once a minute
        with cap._cond:  # noqa: SLF001
            cap._cond.notify()
        deadline = time.monotonic() + 10
        while scan(cap.root)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scan(cap.root)[0] == []
        assert _sample(cap, "edged_captures_pruned_total", {"reason": "age"}) == len(entries)
    finally:
        cap.stop()


def test_restart_reads_what_is_on_disk_and_removes_half_writes(tmp_path):
    clock = Clock()
    cap = make(tmp_path, clock)
    cap.start()
    cap.on_result("cam", frame(1, clock.t), result(1, "dented", 0.9, clock.t))
    assert cap.idle(10)
    cap.stop()
    stray = tmp_path / "caps" / "cam" / "dented" / ".20261201T181000.000Z_5.jpg.tmp"
    stray.write_bytes(b"half")
    (tmp_path / "caps" / "cam" / "dented" / "notes.txt").write_text("not ours")
    again = make(tmp_path, clock)
    again.start()
    try:
        assert again.idle(5)
        deadline = time.monotonic() + 5
        while _sample(again, "edged_captures_stored", None) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sample(again, "edged_captures_stored", None) == 1
    finally:
        again.stop()
    assert not stray.exists() and (tmp_path / "caps" / "cam" / "dented" / "notes.txt").exists()


def test_full_queue_drops_and_counts_without_blocking(tmp_path):
    clock = Clock()
    cap = make(tmp_path, clock, per_minute=1e6, queue_bytes=MiB)  # not started: no writer
    big = Frame(image=np.zeros((480, 640, 3), np.uint8), index=0, ts=clock.t, mono=0.0)
    t0 = time.monotonic()
    out = [cap.on_result("cam", big, result(i, "dented", 0.9, clock.t)) for i in range(10)]
    assert time.monotonic() - t0 < 1.0
    assert out.count("labels") == 1  # 900 KB each: one fits in 1 MiB
    assert _sample(cap, "edged_captures_dropped_total",
                   {"camera": "cam", "rule": "labels", "reason": "queue_full"}) == 9


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable folder")
def test_unwritable_folder_is_counted_not_fatal(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _unwritable(tmp_path, locked / "caps")


def test_folder_under_a_file_is_counted_not_fatal(tmp_path):
    """Works as root too: no one can make a folder below a regular file."""
    (tmp_path / "afile").write_text("x")
    _unwritable(tmp_path, tmp_path / "afile" / "caps")


def _unwritable(tmp_path: Path, where: Path) -> None:
    clock = Clock()
    cap = Capturer(CaptureConfig(dir=str(where), min_free_bytes=0),
                   {"cam": rules(labels=["dented"])}.get, CaptureMetrics(CollectorRegistry()),
                   clock=clock)
    cap.start()
    try:
        for i in range(3):
            assert cap.on_result("cam", frame(i, clock.t), result(i, "dented", 0.9, clock.t))
        assert cap.idle(10)
    finally:
        cap.stop()
    assert _sample(cap, "edged_captures_dropped_total",
                   {"camera": "cam", "rule": "labels", "reason": "error"}) == 3
    assert _sample(cap, "edged_captures_total", {"camera": "cam", "rule": "labels"}) == 0


def test_a_failed_write_leaves_no_half_capture_and_is_counted(tmp_path):
    clock = Clock()
    cap = make(tmp_path, clock)
    (tmp_path / "caps").mkdir()
    (tmp_path / "caps" / "cam").write_text("a file where the camera's folder would go")
    cap.start()
    try:
        cap.on_result("cam", frame(1, clock.t), result(1, "dented", 0.9, clock.t))
        cap.on_result("cam", frame(2, clock.t), result(2, "dented", 0.9, clock.t))
        assert cap.idle(10)
    finally:
        cap.stop()
    assert _sample(cap, "edged_captures_dropped_total",
                   {"camera": "cam", "rule": "labels", "reason": "error"}) == 2
    assert scan(str(tmp_path / "caps")) == ([], [])
    assert sorted(p.name for p in (tmp_path / "caps").rglob("*")) == ["cam"]


def test_config_example_documents_the_capture_defaults():
    import yaml

    from tests.conftest import ROOT

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert CaptureConfig(**example["capture"]) == CaptureConfig()
    assert example["capture"].keys() == CaptureConfig.model_fields.keys()
    rules_doc = example["cameras"]["conveyor"]["capture"]
    assert CaptureRulesConfig(**rules_doc) == CaptureRulesConfig()
    assert rules_doc.keys() == CaptureRulesConfig.model_fields.keys()


def test_events_state_change_reaches_the_capture_of_its_own_result(tmp_path):
    """Joined to the events: a StateChanged (emitted while the state tracker handles the same
    result) marks that result's capture; a stale one for another seq does not."""
    clock, link, events = Clock(), FakeLink(), Events()
    cap = make(tmp_path, clock, link, events=events)
    cap.start()
    try:
        f = frame(1, clock.t)
        events.emit(StateChanged("cam", "missing", result(1, "missing", 0.9, clock.t), f))
        events.emit(ResultPublished("cam", f, result(1, "missing", 0.9, clock.t)))
        events.emit(StateChanged("cam", "missing", result(2, "missing", 0.9, clock.t), f))
        events.emit(ResultPublished("cam", f, result(3, "missing", 0.9, clock.t)))
        assert cap.idle(10)
    finally:
        cap.stop()
    assert [(d["seq"], d["rule"], d["state"]) for _, d in link.sent] == [(1, "states", "missing")]
    events.emit(ResultPublished("cam", frame(4, clock.t), result(4, "dented", 0.9, clock.t)))
    assert len(link.sent) == 1  # stopped: left the events


def test_new_rules_from_a_reload_apply_at_once(tmp_path):
    clock = Clock()
    current = {"cam": rules(labels=["dented"])}
    cap = Capturer(CaptureConfig(dir=str(tmp_path / "caps"), min_free_bytes=0), current.get,
                   CaptureMetrics(CollectorRegistry()), labels_of=lambda _: ["ok", "dented"],
                   clock=clock)
    assert cap.on_result("cam", frame(1, clock.t), result(1, "dented", 0.9, clock.t))
    assert cap.on_result("cam", frame(2, clock.t), result(2, "ok", 0.9, clock.t)) is None
    current["cam"] = rules(labels=["ok", "bent"])  # a reload: new rules, one unknown label
    assert cap.on_result("cam", frame(3, clock.t), result(3, "ok", 0.9, clock.t)) == "labels"
    assert _sample(cap, "edged_capture_unknown_labels", {"camera": "cam"}) == 1
    del current["cam"]  # camera removed
    assert cap.on_result("cam", frame(4, clock.t), result(4, "ok", 0.9, clock.t)) is None


def test_a_reload_rebuilds_the_capturer_when_capture_settings_change():
    from edged.app.reload import diff_configs
    from edged.config import Config

    def cfg(capture: dict | None = None, rules: dict | None = None) -> Config:
        cam = {"source": "/dev/video0", **({"capture": rules} if rules else {})}
        return Config.model_validate({"models": {"default": {"path": "m.tflite"}},
                                      "cameras": {"cam": cam}, **({"capture": capture}
                                                                  if capture else {})})

    assert not diff_configs(cfg(), cfg()).extensions_changed
    assert diff_configs(cfg(), cfg(rules={"labels": ["x"]})).extensions_changed  # turned on
    assert diff_configs(cfg(rules={"labels": ["x"]}),
                        cfg({"max_age_days": 7}, {"labels": ["x"]})).extensions_changed
    # New rules only: the camera restarts and the running capturer reads them from the set.
    d = diff_configs(cfg(rules={"labels": ["x"]}), cfg(rules={"labels": ["y"]}))
    assert not d.extensions_changed and d.cameras_restarted == ("cam",)
