"""The live view end to end: `edged run` on the demo video with the web view on, the page
opened in headless Chromium, the MJPEG stream and snapshot endpoint decoded, streams capped,
basic auth, and streams that end when the daemon stops."""

from __future__ import annotations

import base64
import html.parser
import http.client
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.config import CameraConfig, load_config
from edged.app.daemon import Daemon
from edged.web.imaging import ROI_COLOR
from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.helpers.broker import Mosquitto, free_port

LABELS = (DEMO / "labels.txt").read_text().split()
CAMERAS = ("line1", "line2")
# `roi` arrives with the live-sources work; once CameraConfig has it, the page must show it.
ROI = [40, 30, 240, 180] if "roi" in CameraConfig.model_fields else None
MAX_WIDTH = 200  # the demo video is 320 wide: the view must scale it down
STREAM_FPS = 4
CAPTURED = ["dented", "scratched"]  # the video starts with a dented part


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run scripts/setup.sh")
    return found


def chromium(url: str, profile: Path, *args: str, budget_ms: int = 3000) -> str:
    """Headless Chromium on a loopback URL; returns stdout (the DOM with --dump-dom)."""
    proc = subprocess.run(
        [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--window-size=1280,800", f"--virtual-time-budget={budget_ms}", *args, url],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Cards(html.parser.HTMLParser):
    """Each camera card's texts by class, from Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, str]] = {}
        self.images: dict[str, str] = {}
        self._camera: str | None = None
        self._fields: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "figure" and "data-camera" in a:
            self._camera = a["data-camera"]
            self.cards[self._camera] = {}
        elif tag == "img" and self._camera:
            self.images[self._camera] = a.get("src", "")
        elif self._camera and a.get("class"):
            self._fields = a["class"].split()

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._camera = None
        self._fields = []

    def handle_data(self, data: str) -> None:
        for field in self._fields if self._camera else []:
            self.cards[self._camera][field] = data.strip()


def get(url: str, timeout: float = 5.0, auth: tuple[str, str] | None = None
        ) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a valid JPEG"
    return image


class MjpegReader:
    """Reads a multipart/x-mixed-replace stream on a raw connection, part by part."""

    def __init__(self, port: int, path: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        ctype = self.resp.getheader("Content-Type", "")
        self.boundary = ctype.partition("boundary=")[2].encode()

    def frames(self, duration: float) -> list[bytes]:
        assert self.status == 200
        assert self.resp.readline().strip() == b"--" + self.boundary
        out, end = [], time.monotonic() + duration
        while time.monotonic() < end:
            headers = {}
            while (line := self.resp.readline().strip()):
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            if not headers:
                break  # the stream ended
            assert headers["content-type"] == "image/jpeg"
            out.append(self.resp.read(int(headers["content-length"])))
            assert self.resp.readline() == b"\r\n"
            assert self.resp.readline().strip() == b"--" + self.boundary
        return out

    def close(self) -> None:
        self.resp.close()  # the response owns the socket of a will-close connection
        self.conn.close()


def wait_until(predicate, timeout: float) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def status(port: int) -> dict:
    return json.loads(get(f"http://127.0.0.1:{port}/api/status")[2])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`edged run` with two cameras on the looping demo video, web view on loopback."""
    tmp = tmp_path_factory.mktemp("web")
    broker = Mosquitto(tmp).start()
    port = free_port()
    cfg = demo_config(broker.port, loop=True, realtime=True)
    cfg["cameras"] = {name: dict(cfg["cameras"]["conveyor"]) for name in CAMERAS}
    if ROI is not None:
        cfg["cameras"]["line1"]["roi"] = ROI
    cfg["mqtt"]["outbox"] = {"path": str(tmp / "outbox.db")}
    cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
    cfg["web"] = {"enabled": True, "max_width": MAX_WIDTH, "stream_fps": STREAM_FPS,
                  "max_streams": 2}
    cfg["cameras"]["line2"]["capture"] = {"labels": CAPTURED}  # evidence captures listed
    cfg["capture"] = {"dir": str(tmp / "captures"), "min_free_bytes": 0}
    proc = start_edged("run", "-c", str(write_config(tmp / "c.yaml", cfg)))
    try:
        def ready() -> bool:
            try:
                cams = status(port)["cameras"]
            except OSError:
                return False
            return all(c["label"] for c in cams)

        assert wait_until(ready, 30), "the view never showed results"
        yield port, tmp
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        broker.stop()
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def test_page_in_headless_chromium_shows_labels_and_a_moving_image(served):
    port, tmp = served
    url = f"http://127.0.0.1:{port}/"
    dom = _Cards()
    dom.feed(chromium(url, tmp / "profile-dom", "--dump-dom"))
    assert set(dom.cards) == set(CAMERAS), dom.cards
    for name in CAMERAS:
        card = dom.cards[name]
        assert card["name"] == name
        assert card["label"] in LABELS, card  # filled in by the page's script
        assert card["up-down"] == "up"
        assert card["state"].split()[0] in LABELS + ["unknown"]
        assert float(card["fps"]) > 5  # the video runs at 15 fps
        assert card["age"].endswith(" s") and float(card["age"].split()[0]) < 2
        assert dom.images[name] == f"cameras/{name}/stream.mjpg"
    # line2 has capture rules: its latest captures are listed with label and score.
    assert dom.cards["line2"].get("cap-head") == "latest captures", dom.cards["line2"]
    assert dom.cards["line2"]["cap-label"] in CAPTURED
    assert dom.cards["line2"]["cap-score"].endswith(" %")
    assert "cap-head" not in dom.cards["line1"]

    shots = []
    for i in range(2):
        shot = tmp / f"view-{i}.png"
        chromium(url, tmp / f"profile-shot{i}", f"--screenshot={shot}")
        shots.append(cv2.imread(str(shot)))
        time.sleep(1.5)
    assert shots[0].shape == shots[1].shape == (800, 1280, 3)
    # Text (numbers, labels) changes a few hundred pixels; a moving camera image thousands.
    changed = np.count_nonzero(np.abs(shots[0].astype(int) - shots[1].astype(int)).max(2) > 40)
    assert changed > 20_000, f"only {changed} pixels changed between screenshots"
    # The pictures are on the page: text on flat colours renders in a few hundred distinct
    # colours (measured: 241), camera pictures in thousands (5,000-10,000).
    for shot in shots:
        colours = len(np.unique(shot.reshape(-1, 3), axis=0))
        assert colours > 2000, f"{colours} colours: no picture on the page?"
    if ROI is not None:  # the amber outline of line1's region of interest
        amber = np.all(np.abs(shots[1].astype(int) - ROI_COLOR) < 40, axis=2)
        assert np.count_nonzero(amber) > 500


def test_page_falls_back_to_periodic_fetch(served):
    port, tmp = served
    dom = _Cards()
    dom.feed(chromium(f"http://127.0.0.1:{port}/?mode=poll", tmp / "profile-poll",
                      "--dump-dom"))
    for name in CAMERAS:
        assert f"/cameras/{name}/snapshot.jpg?t=" in dom.images[name], dom.images
        assert dom.cards[name]["label"] in LABELS


def test_snapshot_endpoint_gives_a_changing_scaled_jpeg(served):
    port, _ = served
    first = get(f"http://127.0.0.1:{port}/cameras/line1/snapshot.jpg")
    assert first[0] == 200 and first[1]["Content-Type"] == "image/jpeg"
    image = decode(first[2])
    assert image.shape == (150, MAX_WIDTH, 3)  # 320x240 scaled to the view's width
    time.sleep(1.0)
    second = get(f"http://127.0.0.1:{port}/cameras/line1/snapshot.jpg")
    assert int(second[1]["X-Frame-Index"]) > int(first[1]["X-Frame-Index"])
    assert np.abs(decode(second[2]).astype(int) - image.astype(int)).mean() > 1
    assert get(f"http://127.0.0.1:{port}/cameras/nope/snapshot.jpg")[0] == 404
    assert get(f"http://127.0.0.1:{port}/cameras/line1/other")[0] == 404
    # The metrics and health endpoints are still there.
    assert b"edged_frames_processed_total" in get(f"http://127.0.0.1:{port}/metrics")[2]
    assert get(f"http://127.0.0.1:{port}/healthz")[2] == b"ok\n"


def test_mjpeg_stream_valid_jpegs_capped_rate_and_stream_count(served):
    port, _ = served
    a = MjpegReader(port, "/cameras/line1/stream.mjpg")
    b = MjpegReader(port, "/cameras/line2/stream.mjpg")
    try:
        assert a.resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        t0 = time.monotonic()
        parts = a.frames(2.0)
        took = time.monotonic() - t0
        # 15 fps source, stream capped at STREAM_FPS: never more (plus the first at once).
        assert 2 <= len(parts) <= STREAM_FPS * took + 2, (len(parts), took)
        images = [decode(p) for p in parts]
        assert all(im.shape == (150, MAX_WIDTH, 3) for im in images)
        assert any(np.abs(images[0].astype(int) - im.astype(int)).mean() > 1
                   for im in images[1:])
        assert decode(b.frames(0.5)[0]).shape == (150, MAX_WIDTH, 3)
        assert status(port)["streams"] == 2
        third = get(f"http://127.0.0.1:{port}/cameras/line1/stream.mjpg")
        assert third[0] == 503 and b"web.max_streams" in third[2]
    finally:
        a.close()
    # A viewer that leaves frees its slot (noticed at the next write).
    assert wait_until(lambda: status(port)["streams"] == 1, 5)
    c = MjpegReader(port, "/cameras/line1/stream.mjpg")
    try:
        assert c.status == 200 and len(c.frames(0.3)) >= 1
    finally:
        c.close()
        b.close()
    assert wait_until(lambda: status(port)["streams"] == 0, 5)


def _in_process(tmp_path: Path, broker_port: int, **web) -> Daemon:  # noqa: ANN003
    cfg = demo_config(broker_port, loop=True, realtime=True)
    cfg["web"] = {"enabled": True, **web}
    return Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)))


def test_streams_end_when_the_daemon_stops(tmp_path, broker):
    daemon = _in_process(tmp_path, broker.port, stream_fps=2)
    daemon.start()
    stopped = False
    try:
        port = daemon.metrics_server.port
        assert wait_until(lambda: daemon.cameras[0].last_frame is not None, 10)
        reader = MjpegReader(port, "/cameras/conveyor/stream.mjpg")
        got: list[bytes] = []
        done = threading.Event()

        def read() -> None:
            try:
                got.extend(reader.frames(30))
            except (OSError, http.client.HTTPException):
                pass
            done.set()

        threading.Thread(target=read, name="test-mjpeg-reader", daemon=True).start()
        assert wait_until(lambda: daemon.live_view.streams == 1, 5)
        t0 = time.monotonic()
        daemon.stop()
        stopped = True
        assert time.monotonic() - t0 < 5
        assert done.wait(3), "the stream did not end when the daemon stopped"
        assert daemon.live_view.streams == 0
        reader.close()
        with pytest.raises(OSError):  # the listener is closed too
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if not stopped:
            daemon.stop()


def test_basic_auth_guards_the_view_but_not_metrics(tmp_path, broker):
    secret = tmp_path / "web-password"
    secret.write_text("correct horse\n")
    daemon = _in_process(tmp_path, broker.port, auth={"username": "op",
                                                      "password_file": str(secret)})
    daemon.start()
    try:
        base = f"http://127.0.0.1:{daemon.metrics_server.port}"
        assert wait_until(lambda: daemon.cameras[0].last_frame is not None, 10)
        for path in ("/", "/api/status", "/static/view.js", "/cameras/conveyor/snapshot.jpg",
                     "/cameras/conveyor/stream.mjpg"):
            code, headers, _ = get(base + path)
            assert code == 401 and headers["WWW-Authenticate"].startswith("Basic"), path
            assert get(base + path, auth=("op", "wrong"))[0] == 401
        code, _, body = get(base + "/", auth=("op", "correct horse"))
        assert code == 200 and b"edged live view" in body
        code, _, body = get(base + "/cameras/conveyor/snapshot.jpg", auth=("op", "correct horse"))
        assert code == 200 and decode(body).shape[1] == 320
        assert get(base + "/metrics")[0] == 200  # Prometheus scrapes stay as they were
        assert get(base + "/healthz")[0] == 200
        req = urllib.request.Request(base + "/", method="POST", data=b"x")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"op:correct horse").decode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 405
    finally:
        daemon.stop()


def test_web_view_is_off_by_default(tmp_path, broker):
    cfg = demo_config(broker.port, loop=True, realtime=True)
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)))
    daemon.start()
    try:
        base = f"http://127.0.0.1:{daemon.metrics_server.port}"
        assert daemon.live_view is None
        code, _, body = get(base + "/cameras/conveyor/snapshot.jpg")
        assert b"edged_" in body or code == 404  # the metrics app answers, not a view
        assert b"edged live view" not in get(base + "/")[2]
    finally:
        daemon.stop()
