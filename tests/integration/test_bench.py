"""`edged bench`: the report's parts are measured for real on the demo model and video."""

from __future__ import annotations

import json

from tests.conftest import DEMO, edged


def test_bench_json_report_measures_every_part():
    proc = edged("bench", "--model", str(DEMO / "model.tflite"), "--labels",
                 str(DEMO / "labels.txt"), "--video", str(DEMO / "conveyor.mp4"),
                 "--seconds", "0.5", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    settings = {(r["threads"], r["workers"]) for r in report["invoke"]}
    assert (1, 1) in settings and len(settings) >= 2
    for r in report["invoke"]:
        assert r["ips"] > 10 and 0 < r["p50_ms"] <= r["p99_ms"]
    assert (report["suggestion"]["threads"], report["suggestion"]["workers"]) in settings
    assert report["e2e_fps"] > 10
    # Paced at the video's own 15 fps: the pipeline keeps up, latency is the model's own time.
    assert 10 < report["paced_fps"] < 20
    assert 0 < report["latency_p50_ms"] <= report["latency_p99_ms"] < 1000
    assert 20 < report["rss_mb"] < 2000


def test_bench_table_names_the_suggestion():
    proc = edged("bench", "--model", str(DEMO / "model.tflite"), "--seconds", "0.3",
                 timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "<- suggested" in proc.stdout and "suggested: threads:" in proc.stdout


def test_bench_bad_input_is_one_line(tmp_path):
    for args in (["--model", str(tmp_path / "none.tflite")],
                 ["--model", str(DEMO / "model.tflite"), "--video", str(tmp_path / "x.mp4")],
                 ["--model", str(DEMO / "model.tflite"), "--seconds", "0"]):
        proc = edged("bench", *args, timeout=60)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
