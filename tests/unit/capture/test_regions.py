"""Region geometry: pixel and fraction boxes on a frame, and the config's checks of them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edged.capture.regions import place, region_box
from edged.config import CameraConfig, Config, RegionConfig, cross_problems


def test_pixel_box_must_lie_wholly_inside():
    r = RegionConfig(box=[10, 20, 100, 50])
    assert region_box(r, 640, 480) == (10, 20, 100, 50)
    assert region_box(RegionConfig(box=[540, 430, 100, 50]), 640, 480) == (540, 430, 100, 50)
    with pytest.raises(ValueError, match=r"box \[541, 430, 100, 50\] lies outside the 640x480"):
        region_box(RegionConfig(box=[541, 430, 100, 50]), 640, 480)
    with pytest.raises(ValueError, match="outside"):
        region_box(r, 100, 60)


def test_fractions_follow_the_resolution_and_tile_exactly():
    halves = [RegionConfig(fraction=[i / 3, 0, 1 / 3, 1]) for i in range(3)]
    for width in (640, 641, 1280, 7):
        boxes = [region_box(r, width, 100) for r in halves]
        # Adjacent regions share an edge: no pixel lost or counted twice.
        assert boxes[0][0] == 0 and boxes[-1][0] + boxes[-1][2] == width
        for a, b in zip(boxes, boxes[1:]):
            assert a[0] + a[2] == b[0]
    assert region_box(RegionConfig(fraction=[0.5, 0.5, 0.5, 0.5]), 640, 480) == \
        (320, 240, 320, 240)
    with pytest.raises(ValueError, match="less than a pixel"):
        region_box(RegionConfig(fraction=[0, 0, 0.001, 1]), 100, 100)


def test_place_keeps_good_regions_and_says_why_a_bad_one_fails():
    placed = place({"a": RegionConfig(box=[0, 0, 10, 10]),
                    "b": RegionConfig(box=[0, 0, 1000, 10]),
                    "c": RegionConfig(fraction=[0, 0, 1, 1])}, 320, 240)
    assert placed.boxes == {"a": (0, 0, 10, 10), "c": (0, 0, 320, 240)}
    assert list(placed.errors) == ["b"] and "outside the 320x240 frame" in placed.errors["b"]


@pytest.mark.parametrize("spec, message", [
    ({}, "exactly one of box"),
    ({"box": [0, 0, 1, 1], "fraction": [0, 0, 1, 1]}, "exactly one of box"),
    ({"box": [0, 0, 0, 5]}, "w, h > 0"),
    ({"box": [-1, 0, 5, 5]}, "x, y >= 0"),
    ({"box": [0, 0, 5]}, "expected"),
    ({"fraction": [0.5, 0, 0.6, 1]}, "outside the frame"),
    ({"fraction": [0, 0, 0, 1]}, "w, h > 0"),
    ({"box": [0, 0, 5, 5], "top_k": 0}, "greater than or equal to 1"),
])
def test_region_config_errors(spec, message):
    with pytest.raises(ValidationError, match=message):
        RegionConfig(**spec)


def _cfg(**camera) -> dict:
    return {"node_id": "n", "models": {"m": {"path": "m.tflite"}},
            "cameras": {"cam": {"source": "a.mp4", "model": "m", **camera}}}


def test_region_names_and_overlap():
    # Overlapping regions are fine; names follow the camera rules, minus the topic words.
    cfg = Config.model_validate(_cfg(regions={"a": {"box": [0, 0, 50, 50]},
                                              "b-2": {"box": [10, 10, 50, 50]}}))
    assert list(cfg.cameras["cam"].regions) == ["a", "b-2"]
    for bad in ("a/b", "a b", "a.b", "+", "result", "state", "cmd"):
        with pytest.raises(ValidationError):
            Config.model_validate(_cfg(regions={bad: {"box": [0, 0, 5, 5]}}))
    with pytest.raises(ValidationError, match="roi or regions"):
        CameraConfig(source="a.mp4", roi=[0, 0, 5, 5], regions={"a": {"box": [0, 0, 5, 5]}})


def test_cross_checks_model_and_known_size():
    data = _cfg(type="v4l2", source="/dev/video0", rotate=90,
                v4l2={"width": 640, "height": 480},
                regions={"ok": {"box": [0, 0, 480, 640]},
                         "wide": {"box": [0, 0, 640, 480], "model": "nope"}})
    with pytest.raises(ValidationError) as err:
        Config.model_validate(data)
    text = str(err.value)
    assert "cameras.cam.regions.wide.model: no model named 'nope'" in text
    # Rotated 90 degrees, the 640x480 device gives a 480x640 upright frame.
    assert "cameras.cam.regions.wide.box: [0, 0, 640, 480] lies outside the 480x640" in text
    assert "regions.ok" not in text
    cfg = Config.model_validate(_cfg(regions={"a": {"box": [0, 0, 5000, 5000]}}))
    assert cross_problems(cfg) == []  # size unknown until the stream shows it
    data = _cfg(regions={"a": {"box": [0, 0, 5, 5]}})
    data["cameras"]["cam__a"] = {"source": "b.mp4", "model": "m"}
    with pytest.raises(ValidationError, match="Home Assistant id cam__a is also a camera"):
        Config.model_validate(data)


def test_models_used():
    cam = CameraConfig(source="a.mp4", model="m",
                       regions={"a": {"box": [0, 0, 5, 5]},
                                "b": {"box": [0, 0, 5, 5], "model": "k"}})
    assert cam.models_used() == {"m", "k"}
    assert CameraConfig(source="a.mp4").models_used() == {"default"}


def test_camera_splits_one_frame_into_region_frames_sharing_the_image(caplog):
    import numpy as np

    from edged.capture.camera import Camera
    from edged.inference.scheduler import Scheduler
    from edged.service.metrics import Metrics

    cfg = CameraConfig(source="a.mp4", model="m", policy="every", rotate=90, regions={
        "left": {"box": [0, 0, 20, 40]}, "right": {"fraction": [0.5, 0, 0.5, 1]},
        "other": {"box": [0, 0, 10, 10], "model": "k", "top_k": 1},
        "far": {"box": [0, 0, 41, 10]}})
    main, other, metrics = Scheduler(), Scheduler(), Metrics()
    cam = Camera("cam", cfg, main, metrics, schedulers={"m": main, "k": other})
    for s in (main, other):
        s.add_camera("cam", "every")
    raw = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3)  # upright: 30 x 40
    with caplog.at_level("WARNING"):
        for _ in range(3):
            cam._submit(raw, None)
    jobs = [main.get(0) for _ in range(6)]
    assert main.get(0) is None
    first = [j for j in jobs if j.frame.index == 0]
    assert [(j.subject, j.frame.box) for j in first] == [("cam/left", (0, 0, 20, 40)),
                                                         ("cam/right", (15, 0, 15, 40))]
    # One decode: every region's frame is a box on the same upright array, same capture time.
    assert first[0].frame.image is first[1].frame.image
    assert first[0].frame.image.shape == (40, 30, 3)
    assert np.shares_memory(first[0].frame.region(), first[0].frame.image)
    assert first[0].frame.mono == first[1].frame.mono and first[0].frame.ts == first[1].frame.ts
    # The region with its own model went to that model's scheduler, with its top_k.
    job = other.get(0)
    assert (job.subject, job.top_k, job.frame.index) == ("cam/other", 1, 0)
    assert job.frame.image is first[0].frame.image
    # The region outside the 30x40 frame: one line for the episode, one drop per frame.
    assert metrics.registry.get_sample_value(
        "edged_frames_dropped_total", {"camera": "cam", "reason": "region_outside"}) == 3
    lines = [r for r in caplog.records if "region far" in r.getMessage()]
    assert len(lines) == 1 and "outside the 30x40 frame" in lines[0].getMessage()
    assert metrics.registry.get_sample_value(
        "edged_frames_captured_total", {"camera": "cam"}) == 3


def test_resolution_change_moves_fractions_and_tells_of_a_pixel_box_once(caplog):
    import numpy as np

    from edged.capture.camera import Camera
    from edged.inference.scheduler import Scheduler
    from edged.service.metrics import Metrics

    cfg = CameraConfig(source="a.mp4", model="m", policy="every", regions={
        "half": {"fraction": [0.5, 0, 0.5, 1]}, "px": {"box": [300, 0, 100, 100]}})
    sched, metrics = Scheduler(capacity=100), Metrics()
    cam = Camera("cam", cfg, sched, metrics)
    sched.add_camera("cam", "every")
    big, small = np.zeros((480, 640, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)
    with caplog.at_level("INFO"):
        for image in (big, small, small, big, small, big):  # sizes that keep alternating
            cam._submit(image, None)
    jobs = []
    while (job := sched.get(0)) is not None:
        jobs.append((job.frame.index, job.subject, job.frame.box))
    assert jobs == [(0, "cam/half", (320, 0, 320, 480)), (0, "cam/px", (300, 0, 100, 100)),
                    (1, "cam/half", (160, 0, 160, 240)), (2, "cam/half", (160, 0, 160, 240)),
                    (3, "cam/half", (320, 0, 320, 480)), (3, "cam/px", (300, 0, 100, 100)),
                    (4, "cam/half", (160, 0, 160, 240)),
                    (5, "cam/half", (320, 0, 320, 480)), (5, "cam/px", (300, 0, 100, 100))]
    # Told once for the size that shows it, however often the size comes back.
    text = [r.getMessage() for r in caplog.records if "region px" in r.getMessage()]
    assert len(text) == 1 and text[0].startswith(
        "camera cam: region px: box [300, 0, 100, 100] lies outside the 320x240 frame; skipped")
    assert metrics.registry.get_sample_value(
        "edged_frames_dropped_total", {"camera": "cam", "reason": "region_outside"}) == 3


def test_a_camera_with_regions_decodes_jpegs_in_full(tmp_path):
    """Reduced JPEG decodes follow the model input for the whole frame; a region's pixel box
    is in full-size pixels (and a region is a part of the frame), so regions decode in full,
    and a reload that adds or removes regions re-aims the decode."""
    import cv2
    import numpy as np

    from edged.capture.camera import Camera
    from edged.inference.scheduler import Scheduler
    from edged.service.metrics import Metrics

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((960, 1280, 3), np.uint8))
    plain = CameraConfig(source=str(tmp_path), model="m")
    regions = CameraConfig(source=str(tmp_path), model="m",
                           regions={"r": {"box": [640, 480, 640, 480]}})
    sched = Scheduler()
    cam = Camera("cam", plain, sched, Metrics())
    cam.open()
    try:
        cam.use_input((96, 96))
        assert cam._source.decode_target.hw == (96, 96)
        cam.use_schedulers({"m": sched}, regions)  # a reload adds regions
        assert cam._source.decode_target.hw is None
        cam.use_schedulers({"m": sched}, plain)  # and removes them
        assert cam._source.decode_target.hw == (96, 96)
    finally:
        cam.stop()
