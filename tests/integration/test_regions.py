"""Regions: one camera, four inspection points, each classified on its own (real mosquitto,
real LiteRT, the demo model on a scene made with the demo's own generator)."""

from __future__ import annotations

import copy
import html.parser
import re
import signal
import subprocess

import cv2
import numpy as np

from edged.web.imaging import ROI_COLOR
from tests.conftest import demo_config, start_edged, write_config
from tests.helpers.regions_scene import write_frames
from tests.helpers.schemas import validate
from tests.helpers.subscriber import Subscriber

N = 10
# Two regions in pixels, two in fractions of the 640x480 frame: the 2x2 tiles of the scene.
REGIONS = {"a": {"box": [0, 0, 320, 240]},
           "b": {"box": [320, 0, 320, 240]},
           "c": {"fraction": [0, 0.5, 0.5, 0.5], "top_k": 1},
           "d": {"fraction": [0.5, 0.5, 0.5, 0.5], "smoothing": {"method": "none"},
                 "snapshot": {"enabled": True}}}


def _results(sub: Subscriber, region: str) -> list[dict]:
    return [m.json for m in sub.on(f"/conveyor/{region}/result")]


def test_four_regions_each_their_own_results_seq_state_sensor_and_snapshot(
        tmp_path, broker, subscriber):
    truth = write_frames(tmp_path / "frames", N)
    # "far" does not fit the 640x480 frame: known only once the first frame is read.
    regions = {**REGIONS, "far": {"box": [600, 0, 100, 100]}}
    cfg = demo_config(broker.port, regions=regions, smoothing={"method": "majority",
                                                                "window": 1, "min_votes": 1})
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    cfg["mqtt"]["homeassistant"] = {"enabled": True}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert subscriber.wait_for(
            lambda: all(len(_results(subscriber, r)) >= N for r in REGIONS), 60)
        _, err = proc.communicate(timeout=30)  # a finite folder: the daemon ends by itself
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # One clear line for the episode (not one per frame); the other regions went on.
    far = [line for line in err.splitlines() if "region far" in line]
    assert len(far) == 1 and "box [600, 0, 100, 100] lies outside the 640x480 frame" in far[0]
    assert _results(subscriber, "far") == []
    for j, region in enumerate(REGIONS):
        results = _results(subscriber, region)
        for r in results:
            validate("result", r)
        # Its own gap-free seq, every frame once, and each region's truth.
        assert [r["seq"] for r in results] == list(range(N)), region
        assert [r["frame"] for r in results] == list(range(N)), region
        assert all(r["region"] == region and r["camera"] == "conveyor" for r in results)
        got = [r["label"] for r in results]
        want = [truth[i][j] for i in range(N)]
        assert got == want, (region, got, want)
    assert all(len(r["top_k"]) == 1 for r in _results(subscriber, "c"))  # its override
    assert all(len(r["top_k"]) == 3 for r in _results(subscriber, "a"))  # the model's
    # The regions of one frame carry the same capture time.
    for i in range(N):
        assert len({_results(subscriber, r)[i]["ts"] for r in REGIONS}) == 1
    # A camera with regions has no result of its own.
    assert subscriber.on("/conveyor/result") == []
    # Retained state per region, its last state the last frame's truth (window 1 / none).
    late = Subscriber(broker.port, client_id="late").start()  # sees what is retained
    try:
        assert late.wait_for(lambda: all(late.on(f"/conveyor/{r}/state") for r in REGIONS)
                             and late.on("/conveyor/d/snapshot"), 10)
    finally:
        late.stop()
    for j, region in enumerate(REGIONS):
        retained = late.on(f"/conveyor/{region}/state")
        assert retained[-1].retain and retained[-1].json["state"] == truth[-1][j]
        states = subscriber.on(f"/conveyor/{region}/state")
        for m in states:
            validate("state", m.json)
            assert m.json["region"] == region
        assert states[-1].json["state"] == truth[-1][j]
    assert [m.json["method"] for m in subscriber.on("/conveyor/d/state")][-1] == "none"
    # One Home Assistant sensor per region, reading the region's state topic.
    for region in REGIONS:
        found = subscriber.on(f"homeassistant/sensor/test-node/conveyor__{region}/config")
        assert found, region
        validate("ha-discovery", found[-1].json)
        assert found[-1].json["state_topic"] == f"edged/test-node/conveyor/{region}/state"
        assert found[-1].json["name"] == f"conveyor {region}"
    assert subscriber.on("homeassistant/sensor/test-node/conveyor/config") == []
    # Region d's snapshot: the whole frame, the region outlined (amber) where it lies.
    snaps = late.on("/conveyor/d/snapshot")
    assert snaps and snaps[-1].retain
    image = cv2.imdecode(np.frombuffer(snaps[-1].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    edge = image[240:480, 320:324].reshape(-1, 3).astype(int)  # d's left edge
    assert np.median(edge[:, 2]) > 200 and np.median(edge[:, 0]) < 80, "no amber outline"
    assert not subscriber.on("/conveyor/a/snapshot"), "a has no snapshot configured"


def test_reload_adds_changes_and_removes_regions_without_restarting_capture(
        tmp_path, broker, subscriber):
    write_frames(tmp_path / "frames", 5)
    regions = {k: REGIONS[k] for k in ("a", "b", "c")}
    cfg = demo_config(broker.port, regions=regions, loop=True, fps=10)
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    cfg["mqtt"]["homeassistant"] = {"enabled": True}
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = start_edged("run", "-c", str(path))
    try:
        assert subscriber.wait_for(lambda: len(_results(subscriber, "b")) >= 5, 30)
        new = copy.deepcopy(cfg)
        new["cameras"]["conveyor"]["regions"] = {
            "a": REGIONS["a"],  # unchanged
            "c": {**REGIONS["c"], "top_k": 2},  # changed
            "d": {"fraction": [0.5, 0.5, 0.5, 0.5]}}  # added; b removed
        write_config(path, new)
        proc.send_signal(signal.SIGHUP)
        assert subscriber.wait_for(lambda: len(_results(subscriber, "d")) >= 10, 30)
        b_after = len(_results(subscriber, "b"))
        n_a = len(_results(subscriber, "a"))
        assert subscriber.wait_for(lambda: len(_results(subscriber, "a")) >= n_a + 5, 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "reload: applied (cameras ~conveyor(regions))" in err, err
    # The capture went on: the source was opened once, the frame numbers never restarted.
    assert len(re.findall(r"camera conveyor: \S+ \(images, ", err)) == 1, err
    for region in ("a", "c", "d"):
        results = _results(subscriber, region)
        for r in results:
            validate("result", r)
        seqs = [r["seq"] for r in results]
        assert seqs == list(range(len(seqs))), (region, seqs)  # unchanged ones go on
        frames = [r["frame"] for r in results]
        assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert _results(subscriber, "d")[0]["seq"] == 0
    assert len(_results(subscriber, "b")) == b_after, "a removed region publishes no more"
    c = _results(subscriber, "c")
    assert {len(r["top_k"]) for r in c} == {1, 2}, "the changed region took its new top_k"
    # The removed region's retained state and Home Assistant sensor are cleared; the others
    # (and the new one) are retained.
    late = Subscriber(broker.port, client_id="late").start()
    try:
        assert late.wait_for(lambda: all(late.on(f"/conveyor/{r}/state") for r in "acd")
                             and all(late.on(f"conveyor__{r}/config") for r in "acd"), 10)
    finally:
        late.stop()
    assert not late.on("/conveyor/b/state") and not late.on("conveyor__b/config")
    cleared = [m for m in subscriber.messages if m.topic.endswith(("/conveyor/b/state",
                                                                   "conveyor__b/config"))
               and m.payload == b""]
    assert len(cleared) == 2


def test_frames_of_another_size_skip_a_region_that_no_longer_fits_the_others_go_on(
        tmp_path, broker, subscriber):
    """A fault: the stream's size changes under a pixel region (here a folder of mixed
    sizes, looping). The daemon lives, the fraction region follows every size, the pixel
    region is classified only on frames it fits, and it is told once, not per frame."""
    folder = tmp_path / "frames"
    write_frames(folder, 2)
    small = cv2.resize(cv2.imread(str(folder / "frame_000.png")), (320, 240))
    cv2.imwrite(str(folder / "frame_002.png"), small)
    regions = {"half": {"fraction": [0, 0, 0.5, 0.5]}, "px": {"box": [320, 0, 320, 240]}}
    cfg = demo_config(broker.port, regions=regions, loop=True, fps=20)
    cfg["cameras"]["conveyor"]["source"] = str(folder)
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert subscriber.wait_for(lambda: len(_results(subscriber, "half")) >= 12, 30)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    half, px = _results(subscriber, "half"), _results(subscriber, "px")
    for r in half + px:
        validate("result", r)
    assert [r["seq"] for r in half] == list(range(len(half)))
    assert [r["seq"] for r in px] == list(range(len(px)))  # gap-free: skips take no seq
    assert {r["file"] for r in half} == {"frame_000.png", "frame_001.png", "frame_002.png"}
    assert {r["file"] for r in px} == {"frame_000.png", "frame_001.png"}
    told = [line for line in err.splitlines() if "region px" in line]
    assert len(told) == 1 and "outside the 320x240 frame" in told[0], err


def test_each_region_seq_continues_across_a_restart(tmp_path, broker, subscriber):
    """The outbox keeps each region's next seq under its subject (camera/region)."""
    write_frames(tmp_path / "frames", 3)
    cfg = demo_config(broker.port, regions={k: REGIONS[k] for k in ("a", "b")})
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    path = write_config(tmp_path / "c.yaml", cfg)
    for run in (1, 2):
        proc = start_edged("run", "-c", str(path))
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert subscriber.wait_for(
            lambda: all(len(_results(subscriber, r)) >= 3 * run for r in "ab"), 10)
    for region in "ab":
        assert [r["seq"] for r in _results(subscriber, region)] == list(range(6)), region


class _RegionItems(html.parser.HTMLParser):
    """The page's region list items: {region: {class: text}}, from Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, dict[str, str]] = {}
        self._region: str | None = None
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "li" and "data-region" in a:
            self._region = a["data-region"]
            self.items[self._region] = {}
        elif self._region and tag == "span":
            self._field = a.get("class")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._region = None
        self._field = None

    def handle_data(self, data: str) -> None:
        if self._region and self._field:
            self.items[self._region][self._field] = data.strip()


def test_live_view_lists_and_outlines_each_region_with_its_label(tmp_path, broker):
    from tests.helpers.broker import free_port
    from tests.integration.test_web_view import chromium, get, status, wait_until

    truth = write_frames(tmp_path / "frames", 1)  # one frame, looping: a fixed truth
    port = free_port()
    cfg = demo_config(broker.port, regions=REGIONS, loop=True, fps=10)
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
    cfg["web"] = {"enabled": True}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        def ready() -> bool:
            try:
                cams = status(port)["cameras"]
            except OSError:
                return False
            return all(r["label"] for r in cams[0].get("regions", [{"label": None}]))

        assert wait_until(ready, 30), "the view never showed the regions' results"
        cam = status(port)["cameras"][0]
        assert [r["name"] for r in cam["regions"]] == list(REGIONS)
        assert [r["label"] for r in cam["regions"]] == truth[0]
        assert cam["regions"][2]["box"] == [0, 240, 320, 240]  # a fraction, in pixels
        dom = _RegionItems()
        dom.feed(chromium(f"http://127.0.0.1:{port}/", tmp_path / "profile", "--dump-dom"))
        assert list(dom.items) == list(REGIONS), dom.items
        for j, region in enumerate(REGIONS):
            assert dom.items[region]["name"] == region
            assert dom.items[region]["label"] == truth[0][j]
            assert dom.items[region]["score"].endswith(" %")
        # The image: every region outlined in amber (the tiles' inner edges at x=320, y=240).
        code, _, body = get(f"http://127.0.0.1:{port}/cameras/conveyor/snapshot.jpg")
        assert code == 200
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        amber = np.all(np.abs(image.astype(int) - ROI_COLOR) < 60, axis=2)
        assert amber[:, 315:325].any(1).mean() > 0.8 and amber[235:245, :].any(0).mean() > 0.8
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_regions_with_their_own_model_and_a_reload_that_moves_one(tmp_path, broker, subscriber):
    write_frames(tmp_path / "frames", 3)
    cfg = demo_config(broker.port, loop=True, fps=10, regions={
        "a": REGIONS["a"], "b": {**REGIONS["b"], "model": "other"}})
    cfg["models"]["other"] = dict(cfg["models"]["default"], workers=1)
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = start_edged("run", "-c", str(path))
    try:
        assert subscriber.wait_for(lambda: len(_results(subscriber, "b")) >= 5, 30)
        moved = copy.deepcopy(cfg)
        moved["cameras"]["conveyor"]["regions"]["b"] = REGIONS["b"]  # back to the camera's
        write_config(path, moved)
        proc.send_signal(signal.SIGHUP)
        assert subscriber.wait_for(
            lambda: any(r["model"] == "default" for r in _results(subscriber, "b")), 20)
        n = len(_results(subscriber, "b"))
        assert subscriber.wait_for(lambda: len(_results(subscriber, "b")) >= n + 5, 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "reload: applied (cameras ~conveyor(regions); models -other)" in err, err
    a, b = _results(subscriber, "a"), _results(subscriber, "b")
    assert {r["model"] for r in a} == {"default"}
    models = [r["model"] for r in b]
    # b ran on its own model, then on the camera's: in that order, one switch, seq unbroken.
    assert models[0] == "other" and models[-1] == "default"
    assert models == sorted(models, key=lambda m: m == "default")
    assert [r["seq"] for r in b] == list(range(len(b)))
    assert [r["seq"] for r in a] == list(range(len(a)))


def test_region_captures_with_their_own_rules_and_the_region_outlined(
        tmp_path, broker, subscriber):
    """Evidence captures per region: a region's own rules (override), its folder
    {camera}__{region}/{label}/, the whole frame with the region outlined under .full/, the
    sidecar and announcement (on .../{camera}/{region}/capture) naming the region."""
    import json

    truth = write_frames(tmp_path / "frames", 5)
    caps = tmp_path / "caps"
    cfg = demo_config(broker.port, regions={
        "a": REGIONS["a"],
        "d": {**REGIONS["d"], "capture": {"sample": 1.0, "max_per_minute": 100_000}}})
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "frames")
    cfg["capture"] = {"dir": str(caps), "min_free_bytes": 0}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert subscriber.wait_for(lambda: len(subscriber.on("/conveyor/d/capture")) >= 5, 10)
    announced = [m.json for m in subscriber.on("/conveyor/d/capture")]
    assert not subscriber.on("/conveyor/a/capture") and not subscriber.on("/conveyor/capture")
    assert sorted(a["seq"] for a in announced) == list(range(5))
    for a in announced:
        validate("capture", a)
        assert (a["camera"], a["region"], a["result"]["region"]) == ("conveyor", "d", "d")
        assert a["label"] == truth[a["frame"]][3]
        assert a["image"].startswith(f"conveyor__d/{a['label']}/")
        side = json.loads((caps / a["image"]).with_suffix(".json").read_text())
        assert side == a
        crop = cv2.imread(str(caps / a["image"]))
        assert crop.shape == (240, 320, 3)  # what the model classified: the region
        full = cv2.imread(str(caps / a["full_image"]))
        assert a["full_image"].startswith(".full/conveyor__d/") and full.shape == (480, 640, 3)
        edge = full[240:480, 320:324].reshape(-1, 3).astype(int)  # d's left edge
        assert np.median(edge[:, 2]) > 200 and np.median(edge[:, 0]) < 80, "no outline"
    assert not (caps / "conveyor__a").exists()
