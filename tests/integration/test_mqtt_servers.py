"""mqtt.servers against real mosquitto brokers: moving to the next server when one goes, the
outbox replaying there, and TLS host names checked per entry."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import demo_config, start_edged, write_config
from tests.helpers.broker import Mosquitto
from tests.helpers.durable import DurableSubscriber, first_seen
from tests.helpers.subscriber import Subscriber
from tests.helpers.tls import make_pki, tls_broker


def _servers_config(servers: list[str], **mqtt) -> dict:  # noqa: ANN003
    cfg = demo_config(0, loop=True, fps=20)
    del cfg["mqtt"]["host"], cfg["mqtt"]["port"]
    cfg["mqtt"].update({"servers": servers, "status": {"interval_s": 1}, **mqtt})
    return cfg


def test_a_lost_broker_moves_edged_to_the_next_and_the_outbox_replays_there(tmp_path):
    """Two independent brokers (no bridge): what the first did not acknowledge before it died
    is re-sent to the second, so the union of both has every seq, first arrivals in order."""
    first = Mosquitto(tmp_path).start()
    second = Mosquitto(tmp_path).start()
    subs = [DurableSubscriber(b.port, "edged/+/+/result", f"sub-{i}").start()
            for i, b in enumerate((first, second))]
    status = Subscriber(second.port, "edged/+/status", "status-sub").start()
    cfg = _servers_config([f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"])
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert subs[0].wait_for(lambda: len(subs[0].results()) >= 20, 30)
        first.stop()
        t_lost = time.monotonic()
        assert status.wait_for(lambda: any(m.json.get("server") == f"127.0.0.1:{second.port}"
                                           for m in status.on("/status")), 1 + 5)
        assert time.monotonic() - t_lost <= 1 + 5  # reconnect.max_s + 5
        assert subs[1].wait_for(lambda: len(subs[1].results()) >= 40, 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert f"connected to 127.0.0.1:{first.port} (server 1 of 2)" in err
        assert f"disconnected from 127.0.0.1:{first.port} (server 1 of 2)" in err
        assert f"connected to 127.0.0.1:{second.port} (server 2 of 2)" in err
        seqs = [r["seq"] for r in subs[0].results()] + [r["seq"] for r in subs[1].results()]
        firsts = first_seen(seqs)
        assert firsts == list(range(max(seqs) + 1)), "a seq is missing or out of order"
        beats = [m.json for m in status.on("/status") if m.json["state"] == "online"]
        assert all(b["interval_s"] == 1 for b in beats) and len(beats) >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in (*subs, status):
            s.stop()
        first.stop()
        second.stop()


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def test_tls_host_name_is_checked_per_entry(tmp_path, pki):
    """The broker's certificate names only 127.0.0.1: the `localhost` entry fails its host
    name check (one clear line naming the entry), and edged moves on to the entry that fits."""
    broker, tls_port = tls_broker(tmp_path, pki)
    broker.start()
    sub = Subscriber(broker.port, "edged/#").start()
    cfg = _servers_config([f"localhost:{tls_port}", f"127.0.0.1:{tls_port}"])
    cfg["mqtt"]["tls"] = {"ca_file": str(pki.ca), "cert_file": str(pki.client[0]),
                          "key_file": str(pki.client[1])}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert sub.wait_for(lambda: len(sub.on("/result")) >= 5, 30)
        online = [m.json for m in sub.on("/status") if m.json["state"] == "online"]
        assert online and online[-1]["server"] == f"127.0.0.1:{tls_port}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err
        refused = [ln for ln in err.splitlines() if "cannot reach broker localhost" in ln]
        assert refused and "(server 1 of 2)" in refused[0]
        assert "Hostname mismatch" in refused[0] and "mqtt.tls" in refused[0]
        assert f"connected to 127.0.0.1:{tls_port} (server 2 of 2)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.stop()
        broker.stop()


def test_heartbeat_resends_states_and_home_assistant_expires_after_three_intervals(
        tmp_path, broker, subscriber):
    """Each beat re-sends every camera's retained state, then `online` with a fresh ts, so
    Home Assistant's expire_after (3 intervals) only fires when the node really went quiet."""
    cfg = demo_config(broker.port, loop=True, fps=2)
    cfg["mqtt"].update({"status": {"interval_s": 1}, "homeassistant": {"enabled": True}})
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert subscriber.wait_for(lambda: len([m for m in subscriber.on("/status")
                                                if m.json["state"] == "online"]) >= 4, 30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
    discovery = subscriber.on("/conveyor/config")[0].json
    assert discovery["expire_after"] == 3
    with subscriber._cond:
        seq = [(m.topic.rsplit("/", 1)[-1], m.json.get("ts")) for m in subscriber.messages
               if m.topic.endswith(("/status", "/state"))]
    onlines = [i for i, (kind, _) in enumerate(seq) if kind == "status"][:-1]  # not `stopped`
    assert len(onlines) >= 4
    for i in onlines:  # every online, the first (connect) included, comes right after a state
        assert seq[i - 1][0] == "state"
    stamps = [seq[i][1] for i in onlines]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # Beats about an interval apart (a greet, e.g. right after start, may come in between),
    # never 3 intervals without one.
    assert max(gaps) <= 3.0 and sum(0.8 <= g <= 1.6 for g in gaps) >= 2, gaps
