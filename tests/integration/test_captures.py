"""Evidence captures end to end: the daemon on the demo video (real mosquitto, real LiteRT),
captures on disk and on MQTT, `--eval` on the capture folder, the `edged captures` CLI, and
retention, the free-space floor and bad folders on small filesystems of the test's own."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.app.daemon import Daemon
from edged.config import load_config
from edged.mqtt.extensions.captures import free_bytes, scan
from tests.conftest import DEMO, demo_config, edged, write_config
from tests.helpers.schemas import validate
from tests.helpers.subscriber import Subscriber

DEFECTS = ["scratched", "dented"]
MiB = 1024 * 1024
FRAMES = 600  # the demo video


def run_daemon(cfg: dict, path: Path, registry: CollectorRegistry | None = None) -> Daemon:
    """Run the daemon on the (finite) video until every source ended and it stopped."""
    daemon = Daemon(load_config(write_config(path, cfg)), registry=registry)
    stop = threading.Event()
    timer = threading.Timer(120, stop.set)  # a bound, far above the ~2 s this takes
    timer.start()
    try:
        daemon.run(stop, status_every_s=60)
    finally:
        timer.cancel()
    assert not stop.is_set(), "the daemon did not finish the video in time"
    return daemon


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_demo_video_one_capture_per_defect_result_then_eval_and_cli(tmp_path, broker):
    sub = Subscriber(broker.port).start()
    caps = tmp_path / "caps"
    cam = demo_config(broker.port)["cameras"]["conveyor"]
    cfg = demo_config(broker.port)
    cfg["capture"] = {"dir": str(caps), "min_free_bytes": MiB}
    cfg["cameras"] = {
        # 240 defect frames in about a second: a cap that lets them all through at once.
        "conveyor": {**cam, "capture": {"labels": DEFECTS, "max_per_minute": 6000}},
        # A tight cap (10 at once, one a second), a ROI (so the whole frame is kept too) and
        # a state rule.
        "capped": {**cam, "roi": [40, 30, 240, 180],
                   "capture": {"labels": DEFECTS, "max_per_minute": 60}},
        "states": {**cam, "capture": {"states": ["missing"]}},
    }
    registry = CollectorRegistry()
    try:
        run_daemon(cfg, tmp_path / "c.yaml", registry)
        assert sub.wait_for(lambda: len(sub.on("/result")) >= 3 * FRAMES, 20)
        results = {name: [m.json for m in sub.on(f"/{name}/result")] for name in cfg["cameras"]}
        announced = {name: [m.json for m in sub.on(f"/{name}/capture")]
                     for name in cfg["cameras"]}
        state_changes = [m.json for m in sub.on("/states/state") if m.json["seq"] is not None]
    finally:
        sub.stop()
    assert {n: len(r) for n, r in results.items()} == {n: FRAMES for n in cfg["cameras"]}

    # One capture per result with a defect label: same seqs, same labels, on disk and on MQTT.
    defects = {r["seq"]: r["label"] for r in results["conveyor"] if r["label"] in DEFECTS}
    assert len(defects) == 240  # 12 of the 30 parts, 20 frames each
    entries, _ = scan(str(caps))
    on_disk = {int(e.stem.rsplit("_", 1)[1]): e.label for e in entries if e.camera == "conveyor"}
    assert on_disk == defects
    assert {a["seq"]: a["label"] for a in announced["conveyor"]} == defects
    for a in announced["conveyor"] + announced["capped"] + announced["states"]:
        validate("capture", a)
    for e in entries:
        side = json.loads(Path(os.path.splitext(e.image)[0] + ".json").read_text())
        validate("capture", side)
        assert side["result"] == next(r for r in results[e.camera] if r["seq"] == side["seq"])
    assert sample(registry, "edged_captures_total", camera="conveyor", rule="labels") == 240
    assert sample(registry, "edged_captures_dropped_total", camera="conveyor", rule="labels",
                  reason="queue_full") == 0

    # The cap: 10 at once, then one a second; every other matching result counted.
    capped = [e for e in entries if e.camera == "capped"]
    span = results["capped"][-1]["ts"] - results["capped"][0]["ts"]
    assert 10 <= len(capped) <= 10 + int(span) + 1, (len(capped), span)
    matching = sum(1 for r in results["capped"] if r["label"] in DEFECTS)  # of its ROI
    assert len(capped) + sample(registry, "edged_captures_dropped_total", camera="capped",
                                rule="labels", reason="rate") == matching
    first = json.loads(Path(os.path.splitext(capped[0].image)[0] + ".json").read_text())
    assert (first["width"], first["height"]) == (240, 180)  # the classified region ...
    assert (caps / first["full_image"]).is_file()  # ... and the whole frame beside it

    # The state rule: the frame of every change to `missing`, and nothing else.
    to_missing = sorted(s["seq"] for s in state_changes if s["state"] == "missing")
    assert to_missing and sorted(a["seq"] for a in announced["states"]) == to_missing
    assert all(a["rule"] == "states" and a["state"] == "missing" for a in announced["states"])

    # The capture folder is a labelled data set: --eval gives the same labels back.
    proc = edged("classify", "--model", str(DEMO / "model.tflite"), "--labels",
                 str(DEMO / "labels.txt"), "--eval", str(caps / "conveyor"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["images"] == 240 and report["accuracy"] == 1.0

    # The CLI: list, export a label set as class folders, prune.
    config = str(tmp_path / "c.yaml")
    proc = edged("captures", "list", "-c", config, "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing["total"]["captures"] == len(entries)
    assert {(g["camera"], g["label"]): g["captures"] for g in listing["groups"]}[
        ("conveyor", "dented")] == sum(1 for v in defects.values() if v == "dented")
    out = tmp_path / "export.zip"
    proc = edged("captures", "export", "-c", config, "-o", str(out), "--labels", "dented",
                 "--camera", "conveyor", "--since", "1h")
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    jpgs = [n for n in names if n.endswith(".jpg")]
    assert len(jpgs) == sum(1 for v in defects.values() if v == "dented")
    assert all(n.startswith("dented/conveyor_") for n in names)
    assert len(names) == 2 * len(jpgs)  # each with its sidecar
    proc = edged("captures", "export", "-c", config, "-o", str(out), "--until", "2h")
    assert proc.returncode == 0 and "0 captures" in proc.stdout
    keep = 300_000
    proc = edged("captures", "prune", "-c", config, "--max-bytes", str(keep))
    assert proc.returncode == 0 and "by size" in proc.stdout, proc.stderr
    left, _ = scan(str(caps))
    assert sum(e.bytes for e in left) <= keep and left
    assert left[-1] == entries[-1]  # the newest are kept


# --- small filesystems of the test's own ---------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path):
    """Mount tmpfs filesystems (root only: CI runs as root); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str, readonly: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = f"size={size},mode=0777" + (",ro" if readonly else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "edged-test", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                        f"{proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def capture_config(port: int, where: Path, **capture: object) -> dict:
    cfg = demo_config(port, capture={"labels": DEFECTS, "max_per_minute": 100_000})
    cfg["capture"] = {"dir": str(where / "caps"), **capture}
    return cfg


def test_retention_by_size_keeps_the_newest_within_max_bytes(tmp_path, broker, small_fs):
    fs = small_fs("fs", "16m")
    registry = CollectorRegistry()
    run_daemon(capture_config(broker.port, fs, max_bytes=MiB, min_free_bytes=0),
               tmp_path / "c.yaml", registry)
    entries, _ = scan(str(fs / "caps"))
    total = sum(e.bytes for e in entries)
    assert 0 < total <= MiB
    written = sample(registry, "edged_captures_total", camera="conveyor", rule="labels")
    pruned = sample(registry, "edged_captures_pruned_total", reason="size")
    assert written == 240 and pruned > 0 and written - pruned == len(entries)
    assert sample(registry, "edged_capture_bytes") == total
    # Oldest first: what is left are the newest captures (the highest seqs).
    seqs = sorted(int(e.stem.rsplit("_", 1)[1]) for e in entries)
    assert max(seqs) >= 540 and min(seqs) > 200


def test_free_space_floor_pauses_then_resumes(tmp_path, broker, small_fs, caplog):
    fs = small_fs("fs", "4m")
    ballast = fs / "ballast"
    ballast.write_bytes(b"\0" * (2 * MiB))  # leaves about 2 MiB free
    floor = int(1.5 * MiB)
    registry = CollectorRegistry()
    sub = Subscriber(broker.port, "edged/+/+/result").start()
    try:
        with caplog.at_level(logging.INFO, logger="edged.mqtt.extensions.captures"):
            run_daemon(capture_config(broker.port, fs, min_free_bytes=floor),
                       tmp_path / "c.yaml", registry)
        assert sub.wait_for(lambda: len(sub.messages) >= FRAMES, 10)  # the pipeline went on
    finally:
        sub.stop()
    assert free_bytes(str(fs)) >= floor  # the floor held
    written = sample(registry, "edged_captures_total", camera="conveyor", rule="labels")
    paused = sample(registry, "edged_captures_dropped_total", camera="conveyor",
                    rule="labels", reason="paused")
    assert written > 0 and paused > 0 and written + paused == 240
    assert sample(registry, "edged_capture_paused") == 1
    pauses = [r for r in caplog.records if "capture: paused" in r.getMessage()]
    assert len(pauses) == 1, [r.getMessage() for r in pauses]  # once per episode
    # Space freed: the next run captures again and says so once.
    ballast.unlink()
    caplog.clear()
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="edged.mqtt.extensions.captures"):
        run_daemon(capture_config(broker.port, fs, min_free_bytes=floor), tmp_path / "d.yaml",
                   registry)
    assert sample(registry, "edged_captures_total", camera="conveyor", rule="labels") > 0
    assert free_bytes(str(fs)) >= floor


def test_full_and_readonly_folders_are_counted_and_the_pipeline_goes_on(tmp_path, broker,
                                                                       small_fs, caplog):
    full = small_fs("full", "1m")
    with open(full / "ballast", "wb") as f:  # fill it to the last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    readonly = small_fs("ro", "1m", readonly=True)  # even root cannot write here
    for where, label, reason in ((full, "full", "paused"), (readonly, "ro", "error")):
        registry = CollectorRegistry()
        sub = Subscriber(broker.port, "edged/+/+/result", f"sub-{label}").start()
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger="edged.mqtt.extensions.captures"):
                run_daemon(capture_config(broker.port, where, min_free_bytes=0),
                           tmp_path / f"{label}.yaml", registry)
            assert sub.wait_for(lambda: len(sub.messages) >= FRAMES, 10), label
        finally:
            sub.stop()
        assert sample(registry, "edged_frames_processed_total", camera="conveyor") == FRAMES
        assert sample(registry, "edged_captures_total", camera="conveyor", rule="labels") == 0
        assert sample(registry, "edged_captures_dropped_total", camera="conveyor",
                      rule="labels", reason=reason) == 240, label
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1, lines  # one clear line per episode, no traceback
        assert ("cannot write to" if label == "ro" else "capture: paused") in lines[0]
        assert scan(str(where / "caps")) == ([], [])


# --- bad input ----------------------------------------------------------------------------

def check(tmp_path: Path, cfg: dict) -> str:
    proc = edged("check-config", "-c", str(write_config(tmp_path / "bad.yaml", cfg)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_bad_rules_are_one_line_at_check_config(tmp_path):
    err = check(tmp_path, demo_config(1883, capture={"labels": ["dented", "bent"]}))
    assert err.strip().endswith("cameras.conveyor.capture.labels: 'bent' is not a label of "
                                "model 'default' (labels: ok, scratched, dented, missing, "
                                "misaligned)")
    assert len(err.strip().splitlines()) == 1
    err = check(tmp_path, demo_config(1883, capture={"below_score": 1.5, "sample": -0.1}))
    assert "cameras.conveyor.capture.below_score: Input should be less than or equal to 1" in err
    assert "cameras.conveyor.capture.sample: Input should be greater than or equal to 0" in err
    cfg = demo_config(1883, capture={"states": ["missing"]})
    cfg["mqtt"]["state"] = {"enabled": False}
    assert "cameras.conveyor.capture.states: needs mqtt.state.enabled" in check(tmp_path, cfg)
    cfg = demo_config(1883)
    cfg["capture"] = {"jpeg_quality": 101, "max_bytes": 10}
    err = check(tmp_path, cfg)
    assert "capture.jpeg_quality" in err and "capture.max_bytes" in err


def test_label_unknown_to_embedded_labels_is_a_counted_runtime_condition(tmp_path, broker,
                                                                        caplog):
    """Without a labels file the model's labels are known only once it loads: the daemon
    runs, warns once and exports the count; the rule never matches."""
    cfg = demo_config(broker.port, capture={"labels": ["dented"]})
    del cfg["models"]["default"]["labels"]  # the demo model embeds none: labels are 0..4
    cfg["capture"] = {"dir": str(tmp_path / "caps"), "min_free_bytes": 0}
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, logger="edged.mqtt.extensions.captures"):
        run_daemon(cfg, tmp_path / "c.yaml", registry)
    assert sample(registry, "edged_capture_unknown_labels", camera="conveyor") == 1
    assert sum("'dented' not a label" in r.getMessage() for r in caplog.records) == 1
    assert sample(registry, "edged_frames_processed_total", camera="conveyor") == FRAMES
    assert scan(str(tmp_path / "caps"))[0] == []
