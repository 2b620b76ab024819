"""`edged models pull` against a real HTTP server on loopback serving a shared model: Range
resume after an interrupted transfer, sha256 checks, catalogue entries, one-line errors."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from edged.errors import EdgedError
from edged.tools.pull import CATALOGUE, Download, pull
from tests.conftest import edged, shared_or_skip

MODEL = "imagenet/mobilenet_v2_1.0_224_quant.tflite"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_first_at: int | None = None  # drop the connection after this many bytes, once
    ranges: list[str | None] = []

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        if start >= len(data):
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = type(self).cut_first_at
        if cut is not None:
            type(self).cut_first_at = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    models = shared_or_skip()
    handler = type("H", (_Handler,), {"files": {
        "/m/model.tflite": (models / MODEL).read_bytes(),
        "/m/imagenet_labels.txt": (models / "imagenet" / "imagenet_labels.txt").read_bytes()},
        "ranges": [], "cut_first_at": None})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", handler
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pull_url_with_hash(server, tmp_path):
    base, _ = server
    want = _sha(shared_or_skip() / MODEL)
    proc = edged("models", "pull", f"{base}/m/model.tflite", "--sha256", want,
                 "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = tmp_path / "out" / "model.tflite"
    assert proc.stdout.strip() == str(out)
    assert _sha(out) == want
    assert not (tmp_path / "out" / "model.tflite.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    base, handler = server
    handler.cut_first_at = 1_000_000
    want = _sha(shared_or_skip() / MODEL)
    path = pull(Download(f"{base}/m/model.tflite", want), str(tmp_path), progress=False)
    assert _sha(Path(path)) == want
    assert handler.ranges == [None, "bytes=1000000-"]


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    base, handler = server
    data = (shared_or_skip() / MODEL).read_bytes()
    (tmp_path / "model.tflite.part").write_bytes(data[:123456])
    path = pull(Download(f"{base}/m/model.tflite", _sha(shared_or_skip() / MODEL)),
                str(tmp_path), progress=False)
    assert Path(path).read_bytes() == data
    assert handler.ranges == ["bytes=123456-"]


def test_wrong_hash_fails_cleanly(server, tmp_path):
    base, _ = server
    proc = edged("models", "pull", f"{base}/m/model.tflite", "--sha256", "0" * 64,
                 "-o", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "sha256 mismatch" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_no_hash_prints_the_one_it_got(server, tmp_path):
    base, _ = server
    proc = edged("models", "pull", f"{base}/m/imagenet_labels.txt", "-o", str(tmp_path))
    assert proc.returncode == 0
    want = _sha(shared_or_skip() / "imagenet" / "imagenet_labels.txt")
    assert proc.stderr.strip() == (f"edged: imagenet_labels.txt: no sha256 to check against; "
                                   f"got {want} (pin it with --sha256)")


def test_missing_file_and_unreachable_host(server, tmp_path):
    base, _ = server
    proc = edged("models", "pull", f"{base}/m/nope.tflite", "-o", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.strip().endswith("HTTP 404 Not Found")
    proc = edged("models", "pull", "http://127.0.0.1:9/x.tflite", "-o", str(tmp_path))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "download failed" in lines[0]


def test_bad_sha_and_unknown_name(tmp_path):
    proc = edged("models", "pull", "mobilenet_v2_quant", "--sha256", "xyz", "-o", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.strip() == "edged: --sha256: expected 64 hex digits"
    proc = edged("models", "pull", "no-such-model", "-o", str(tmp_path))
    assert proc.returncode == 1 and "unknown model 'no-such-model'" in proc.stderr


def test_catalogue_entry_pulls_model_and_labels(server, tmp_path):
    """The pinned catalogue hashes match the shared copies of the same files (same commit)."""
    base, _ = server
    entry = CATALOGUE["mobilenet_v2_quant"]
    local_model = Download(f"{base}/m/model.tflite", entry.model.sha256)
    local_labels = Download(f"{base}/m/imagenet_labels.txt", entry.labels.sha256)
    assert _sha(Path(pull(local_model, str(tmp_path), progress=False))) == entry.model.sha256
    assert _sha(Path(pull(local_labels, str(tmp_path), progress=False))) == entry.labels.sha256
    tpu = CATALOGUE["mobilenet_v2_quant_edgetpu"].model.sha256
    assert tpu == _sha(shared_or_skip() / "invalid" / "mobilenet_v2_1.0_224_quant_edgetpu.tflite")


def test_models_list():
    proc = edged("models", "list")
    assert proc.returncode == 0
    for name in CATALOGUE:
        assert name in proc.stdout


def test_pull_error_type(tmp_path):
    with pytest.raises(EdgedError):
        pull(Download("http://127.0.0.1:9/x.tflite", None), str(tmp_path), progress=False,
             timeout=1)
