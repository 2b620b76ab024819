"""The live view's and snapshots' parts on their own: the classified box, scaling, JPEG size
cap, the shared encoding, basic auth, the exposure warning, and the config errors."""

from __future__ import annotations

import base64
import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edged.app.cameras import CameraSet
from edged.app.events import Events, ResultPublished
from edged.config import WebConfig
from edged.frame import Frame
from edged.web.imaging import ROI_COLOR, encode_capped, view_image
from edged.web.server import JpegCache, LiveView, check_basic_auth, exposure_warning, is_loopback
from tests.conftest import demo_config, edged, write_config


def _noise(h: int, w: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _cameras(*cams: SimpleNamespace) -> CameraSet:
    cameras = CameraSet()
    for cam in cams:
        cameras.add(cam, None)  # type: ignore[arg-type]
    return cameras


def test_view_image_scales_and_outlines_roi_without_touching_the_frame():
    frame = np.zeros((240, 320, 3), np.uint8)
    before = frame.copy()
    out = view_image(frame, (40, 40, 80, 60), max_width=160)
    assert out.shape == (120, 160, 3)
    assert np.array_equal(frame, before)  # the camera's frame is shared with inference
    assert tuple(out[20, 30]) == ROI_COLOR  # left edge of the ROI, at half scale
    assert tuple(out[35, 40]) == (0, 0, 0)  # inside the ROI: untouched
    gray = np.zeros((240, 320), np.uint8)
    assert view_image(gray, None, 640).shape == (240, 320, 3)  # never scaled up; colour


def test_frame_region_is_a_view_of_its_box():
    image = _noise(240, 320)
    frame = Frame(image, 0, 0.0, 0.0, box=(10, 20, 100, 50))
    region = frame.region()
    assert region.shape == (50, 100, 3) and np.shares_memory(region, image)
    assert np.array_equal(region, image[20:70, 10:110])
    assert Frame(image, 0, 0.0, 0.0).region() is image


def test_encode_capped_fits_and_decodes():
    image = _noise(480, 640)  # noise compresses badly: needs quality and size steps
    for cap in (200_000, 30_000, 5_000):
        data = encode_capped(image, cap)
        assert len(data) <= cap
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    small = cv2.imdecode(np.frombuffer(encode_capped(image, 5_000), np.uint8), 1)
    assert small.shape[1] < 640  # had to shrink
    with pytest.raises(ValueError):
        encode_capped(image, 10)


def test_jpeg_cache_shares_one_encoding_and_caps_the_rate():
    clock = _Clock()
    cache = JpegCache(640, 75, min_interval=0.25, clock=clock)
    f1 = Frame(_noise(60, 80, 1), 1, 0.0, 1.0)
    f2 = Frame(_noise(60, 80, 2), 2, 0.0, 2.0)
    assert cache.get(None) is None
    a = cache.get(f1)
    assert cache.get(f1) is a and cache.encodings == 1  # same frame: shared
    clock.t += 0.1
    assert cache.get(f2) is a and cache.encodings == 1  # new frame too soon: capped
    clock.t += 0.2
    b = cache.get(f2)
    assert b is not a and b.key == (2, 2.0) and cache.encodings == 2


def test_basic_auth_check():
    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert check_basic_auth(header("op", "s3cret:x"), "op", "s3cret:x")
    assert not check_basic_auth(header("op", "wrong"), "op", "s3cret:x")
    assert not check_basic_auth(header("other", "s3cret:x"), "op", "s3cret:x")
    assert not check_basic_auth(None, "op", "pw")
    assert not check_basic_auth("Basic !!!notbase64", "op", "pw")
    assert not check_basic_auth("Bearer abc", "op", "pw")


def test_loopback_and_exposure_warning():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("")
    assert not is_loopback("192.168.1.5") and not is_loopback("edge-box.lan")
    assert exposure_warning("127.0.0.1", 9108, auth=False) is None
    assert exposure_warning("0.0.0.0", 9108, auth=True) is None
    assert "WITHOUT authentication" in exposure_warning("0.0.0.0", 9108, auth=False)


def _view(host: str, password: str | None, cameras: CameraSet,
          events: Events | None = None) -> LiveView:
    cfg = WebConfig(enabled=True, auth={"username": "op", "password_env": "X"}
                    if password else None)
    return LiveView(cfg, "n", cameras, CollectorRegistry(), events or Events(), None, password,
                    lambda: (host, 9108))


def test_start_warns_once_when_exposed_without_auth(caplog):
    caplog.set_level(logging.INFO, logger="edged.web.server")
    for host, password, warned in (("0.0.0.0", None, True), ("0.0.0.0", "pw", False),
                                   ("127.0.0.1", None, False)):
        caplog.clear()
        view = _view(host, password, _cameras())
        view.start()
        view.stop()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == (1 if warned else 0), (host, password, caplog.text)
        if warned:
            assert "0.0.0.0:9108" in warnings[0].getMessage()
            assert "web.auth" in warnings[0].getMessage()


def test_nobody_watching_means_no_encoding():
    cam = SimpleNamespace(name="a", cfg=SimpleNamespace(), last_frame=None)
    events = Events()
    view = _view("127.0.0.1", None, _cameras(cam), events)
    view.start()
    for i in range(100):  # frames and results flow; nobody asks
        cam.last_frame = Frame(_noise(60, 80, i), i, 0.0, float(i), box=(0, 0, 10, 10))
        events.emit(ResultPublished("a", cam.last_frame, {"label": "ok", "score": 0.9}))
    assert "a" not in view._caches  # no cache, no encoding
    status = view.status()
    assert status["cameras"][0]["label"] == "ok" and status["cameras"][0]["roi"] == [0, 0, 10, 10]
    assert "a" not in view._caches  # the status page does not encode either
    view.stop()
    events.emit(ResultPublished("a", cam.last_frame, {"label": "bad", "score": 0.5}))
    assert view.status()["cameras"][0]["label"] == "ok"  # stopped: left the events


def test_status_lists_each_cameras_latest_captures():
    cam = SimpleNamespace(name="a", cfg=SimpleNamespace(), last_frame=None)
    latest = {"a": [{"label": "dented", "score": 0.97, "rule": "labels", "ts": 1.0, "seq": 7,
                     "image": "a/dented/x_7.jpg"}]}
    view = LiveView(WebConfig(), "n", _cameras(cam), CollectorRegistry(), Events(),
                    captures=lambda name: latest.get(name, []))
    assert view.status()["cameras"][0]["captures"] == latest["a"]
    plain = _view("127.0.0.1", None, _cameras(cam))
    assert plain.status()["cameras"][0]["captures"] == []  # capture off: an empty list


# --- config errors: one line naming the key, no traceback --------------------------------


def _check(tmp_path, cfg: dict) -> str:  # noqa: ANN001
    proc = edged("check-config", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_web_config_errors(tmp_path):
    cfg = demo_config(1883)
    cfg["web"] = {"enabled": True}
    cfg["metrics"] = {"enabled": False}
    assert "web.enabled: needs metrics.enabled" in _check(tmp_path, cfg)
    cfg = demo_config(1883)
    cfg["web"] = {"enabled": True, "auth": {"username": "op", "password_env": "A",
                                            "password_file": "p"}}
    assert "web.auth: give exactly one of" in _check(tmp_path, cfg)
    cfg["web"] = {"enabled": True, "auth": {"username": "op", "password_file": "nope.txt"}}
    assert "web.auth.password_file: file not found" in _check(tmp_path, cfg)
    cfg["web"] = {"enabled": True, "stream_fps": 0}
    assert "web.stream_fps" in _check(tmp_path, cfg)


def test_snapshot_config_errors(tmp_path):
    cfg = demo_config(1883, snapshot={"enabled": True, "labels": ["dented"]})
    cfg["mqtt"]["state"] = {"enabled": False}
    err = _check(tmp_path, cfg)
    assert "cameras.conveyor.snapshot.enabled: needs mqtt.state.enabled" in err
    cfg = demo_config(1883, snapshot={"enabled": True, "max_bytes": 100})
    assert "cameras.conveyor.snapshot.max_bytes" in _check(tmp_path, cfg)


def test_unknown_snapshot_label_and_unset_password_env_stop_the_run(tmp_path):
    cfg = demo_config(1883, snapshot={"enabled": True, "labels": ["dented", "bent"]})
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "edged: cameras.conveyor.snapshot.labels: 'bent' is not a label of model 'default'")
    cfg = demo_config(1883)
    cfg["web"] = {"enabled": True,
                  "auth": {"username": "op", "password_env": "EDGED_TEST_UNSET_PW"}}
    proc = edged("run", "-c", str(write_config(tmp_path / "d.yaml", cfg)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("edged: web.auth.password_env: the environment variable EDGED_TEST_UNSET_PW is "
            "not set") in proc.stderr


def test_snapshot_endpoint_outlines_the_roi_over_http():
    """The view's HTTP path with a camera whose frames carry a box."""
    import urllib.request

    from edged.service.metrics import Metrics, MetricsServer
    from tests.conftest import DEMO

    video = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    ok, image = video.read()
    video.release()
    assert ok
    # The camera crops with its box once, at capture; the view outlines that very box.
    cam = SimpleNamespace(name="qc", cfg=SimpleNamespace(),
                          last_frame=Frame(image, 0, 0.0, 1.0, box=(80, 60, 160, 120)))
    metrics = Metrics()
    view = LiveView(WebConfig(enabled=True), "n", _cameras(cam), metrics.registry, Events(),
                    None, None, lambda: ("127.0.0.1", server.port))
    server = MetricsServer(metrics, "127.0.0.1", 0, mounts=[(view.handles, view.app)])
    server.start()
    view.start()
    try:
        url = f"http://127.0.0.1:{server.port}/cameras/qc/snapshot.jpg"
        with urllib.request.urlopen(url, timeout=5) as r:
            got = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert got.shape == image.shape
        amber = np.all(np.abs(got.astype(int) - ROI_COLOR) < 60, axis=2)
        # The outline: the ROI's top edge row is amber over most of its width, nothing far off.
        assert amber[57:64, 80:240].any(0).mean() > 0.8
        assert amber[176:183, 80:240].any(0).mean() > 0.8
        assert amber[:50].sum() == 0 and amber[190:].sum() == 0
        assert amber[80:160, 100:220].sum() == 0  # inside: the picture, not drawn over
        assert np.array_equal(cam.last_frame.image, image)  # the frame itself is untouched
    finally:
        view.stop()
        server.stop()
