"""Shared fixtures: a real broker per test, paths to the demo and the shared real models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.broker import Mosquitto
from tests.helpers.subscriber import Subscriber

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo"
SHARED = Path(os.environ.get("EDGED_SHARED", ROOT.parent / "shared"))
SHARED_MODELS = SHARED / "models"


def shared_or_skip() -> Path:
    if not (SHARED_MODELS / "README.md").exists():
        pytest.skip(f"real models not available: {SHARED_MODELS} is absent (CI provides ../shared)")
    return SHARED_MODELS


@pytest.fixture(autouse=True)
def _state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's durable state (the MQTT outbox) in its own folder, as systemd's
    StateDirectory= would give it; daemons started by the test inherit it."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


@pytest.fixture
def broker(tmp_path: Path):
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker: Mosquitto):
    s = Subscriber(broker.port).start()
    yield s
    s.stop()


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo_config(port: int, **camera: object) -> dict:
    """The demo pipeline against a broker on `port`, metrics on an ephemeral port."""
    return {
        "node_id": "test-node",
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect": {"initial_s": 0.2, "max_s": 1}},
        "models": {"default": {"path": str(DEMO / "model.tflite"),
                               "labels": str(DEMO / "labels.txt"), "workers": 2}},
        "cameras": {"conveyor": {"source": str(DEMO / "conveyor.mp4"), **camera}},
        "metrics": {"listen": "127.0.0.1:0"},
    }


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:  # noqa: ANN001
    """Poll `predicate` until it holds or `timeout` passes: a wait, never a fixed sleep."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def edged(*args: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    """Run the edged CLI as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 120), **kwargs)


def start_edged(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edged", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


_TIERS = ("unit", "integration", "system", "faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by folder: tests/unit -> unit, tests/integration -> integration, ..."""
    base = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = Path(str(item.fspath)).resolve().relative_to(base).parts[0]
        except ValueError:
            continue
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))
