"""What the units rely on, against a real daemon: `edged reload-wait` (ExecReload=) and the
CPU fast-path warning when /proc/cpuinfo is hidden as ProcSubset=pid hides it."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import DEMO, demo_config, edged, write_config


def _daemon(path, runtime_dir) -> subprocess.Popen:  # noqa: ANN001
    env = {**os.environ, "RUNTIME_DIRECTORY": str(runtime_dir)}
    return subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def test_reload_wait_returns_once_applied_and_fails_for_a_refused_config(tmp_path, broker,
                                                                         subscriber):
    data = demo_config(broker.port, loop=True, realtime=True)
    path = write_config(tmp_path / "c.yaml", data)
    run = tmp_path / "run"
    run.mkdir()
    proc = _daemon(path, run)
    try:
        # systemd allows a reload only once the unit is active (READY=1): results flow.
        assert subscriber.wait_for(lambda: len(subscriber.on("/conveyor/result")) >= 3, 30)
        ok = edged("reload-wait", "--pid", str(proc.pid), "--runtime-dir", str(run),
                   "--timeout", "60")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("reload applied:"), ok.stdout
        # A valid change: the reply comes after it is in force.
        changed = copy.deepcopy(data)
        changed["cameras"]["second"] = dict(changed["cameras"]["conveyor"])
        write_config(path, changed)
        ok = edged("reload-wait", "--pid", str(proc.pid), "--runtime-dir", str(run),
                   "--timeout", "30")
        assert ok.returncode == 0 and "cameras +second" in ok.stdout, (ok.stdout, ok.stderr)
        # An invalid file (as if check-config were skipped): non-zero, with edged's reason.
        bad = copy.deepcopy(changed)
        bad["mqtt"]["qos"] = 7
        write_config(path, bad)
        refused = edged("reload-wait", "--pid", str(proc.pid), "--runtime-dir", str(run),
                        "--timeout", "30")
        assert refused.returncode == 1
        assert "reload invalid:" in refused.stderr and "mqtt.qos" in refused.stderr
        assert "still running on the previous config" in refused.stderr
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err


def test_reload_wait_is_bounded_for_a_process_that_never_answers(tmp_path):
    # A process of ours that ignores SIGHUP and writes nothing.
    idle = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(60)"])
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        proc = edged("reload-wait", "--pid", str(idle.pid), "--runtime-dir", str(tmp_path),
                     "--timeout", "1")
        assert proc.returncode == 1 and "did not finish the reload within 1s" in proc.stderr
        assert time.monotonic() - t0 < 20
    finally:
        idle.kill()
        idle.wait(5)
    none = edged("reload-wait", "--pid", str(idle.pid), "--timeout", "1",
                 env={k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"})
    assert none.returncode == 1 and "RUNTIME_DIRECTORY" in none.stderr


def _can_hide_cpuinfo() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1) to mount a /proc without /proc/cpuinfo"
    probe = subprocess.run(["unshare", "-m", "-p", "-f", "sh", "-c",
                            "mount -t proc -o subset=pid proc /proc && ! test -e /proc/cpuinfo"],
                           capture_output=True, timeout=20)
    return None if probe.returncode == 0 else "this kernel cannot mount proc with subset=pid"


def test_fast_path_warning_when_proc_cpuinfo_is_hidden(tmp_path, broker):
    """The same /proc that ProcSubset=pid gives a service (a private proc mount with
    subset=pid): LiteRT creates no XNNPACK delegate, and edged says so once, naming why."""
    reason = _can_hide_cpuinfo()
    if reason:
        pytest.skip(reason)
    # 20 frames of the demo video: without XNNPACK each takes long, and the warning is what
    # is checked, not the results.
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    for i in range(20):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(frames / f"{i:03d}.png"), image)
    cap.release()
    path = write_config(tmp_path / "c.yaml", demo_config(broker.port, source=str(frames)))
    normal = edged("run", "-c", str(path))
    assert normal.returncode == 0, normal.stderr
    assert "CPU fast path XNNPACK" in normal.stderr
    assert "without its fast path" not in normal.stderr
    hidden = subprocess.run(
        ["unshare", "-m", "-p", "-f", "sh", "-c",
         f"mount -t proc -o subset=pid proc /proc && exec {sys.executable} -m edged run -c "
         f"{path}"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())})
    assert hidden.returncode == 0, hidden.stderr
    assert hidden.stderr.count("runs without its fast path") == 1, hidden.stderr
    assert "/proc/cpuinfo is not readable (systemd ProcSubset=pid" in hidden.stderr
