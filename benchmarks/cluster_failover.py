#!/usr/bin/env python3
"""Failover through a real 3-node NATS cluster (MQTT + JetStream, 3 replicas) with 6 daemons.

    .venv/bin/python benchmarks/cluster_failover.py [--kills 6] [--daemons 6] [--fps 5]

Each daemon runs the looping demo video at --fps with `mqtt.servers` listing all three nodes,
rotated so that two daemons start on each node; one consumer (persistent session, QoS 1) sits
on n3 and follows the cluster. Then, --kills times: SIGKILL n1 or n2 (alternating), measure,
restart it, wait until it is healthy and everything flows again. Per daemon on the killed
node:
  - failover from the kill: SIGKILL -> the daemon's "connected to <another node>" log line;
  - the broker's share: SIGKILL -> a fresh probe client is accepted by a survivor again
    (JetStream re-electing its stream leaders);
  - edged's share: the cluster accepts clients again -> the daemon is connected.
At the end every daemon stops cleanly (draining its outbox) and results delivered to the
consumer (distinct seqs) are compared with results made (the outbox's seq counter).
Also: what one broker node carries here (QoS 1, result-sized payloads, one paho publisher
and one subscriber), for mosquitto and for a standalone NATS node.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from tests.helpers.broker import Mosquitto  # noqa: E402
from tests.helpers.nats_cluster import (  # noqa: E402
    ClusterSubscriber,
    DaemonLog,
    NatsCluster,
    accepting_again,
)

DEMO = ROOT / "models" / "demo"


def daemon_config(servers: list[str], node_id: str, outbox: Path, fps: int) -> dict:
    return {
        "node_id": node_id,
        "mqtt": {"servers": servers, "protocol": "v3.1.1",
                 "reconnect": {"initial_s": 0.2, "max_s": 1.0},
                 "status": {"interval_s": 2}, "outbox": {"path": str(outbox)},
                 "drain_timeout_s": 30},
        "models": {"default": {"path": str(DEMO / "model.tflite"),
                               "labels": str(DEMO / "labels.txt"), "workers": 1}},
        "cameras": {"conveyor": {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                                 "fps": fps}},
        "metrics": {"enabled": False},
    }


def current_server(log: DaemonLog) -> str | None:
    lines = log.matching("mqtt: connected to ")
    return lines[-1][1].split("connected to ", 1)[1].split()[0] if lines else None


def made_and_left(outbox: Path) -> tuple[int, int]:
    with sqlite3.connect(outbox) as db:
        row = db.execute("SELECT next FROM seqs WHERE camera = 'conveyor'").fetchone()
        left = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    return (row[0] if row else 0), left


def flowing(sub: ClusterSubscriber, ids: list[str], more: int, timeout: float) -> bool:
    marks = {n: max((r["seq"] for r in sub.results(n)), default=-1) for n in ids}
    return sub.wait_for(lambda: all(max((r["seq"] for r in sub.results(n)), default=-1)
                                    >= marks[n] + more for n in ids), timeout)


def failover_round(args: argparse.Namespace, work: Path) -> dict:
    cluster = NatsCluster(work).start()
    servers = cluster.mqtt_servers
    sub = ClusterSubscriber([servers[2], servers[0], servers[1]]).start()
    ids = [f"bench-{i}" for i in range(args.daemons)]
    procs, logs = {}, {}
    for i, nid in enumerate(ids):
        order = servers[i % 3:] + servers[:i % 3]  # two daemons start on each node
        conf = work / f"{nid}.yaml"
        conf.write_text(yaml.safe_dump(daemon_config(order, nid, work / f"{nid}.db", args.fps)))
        procs[nid] = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, cwd=ROOT)
        logs[nid] = DaemonLog(procs[nid], nid)
    from_kill, broker_share, edged_share, errors = [], [], [], []
    try:
        if not flowing(sub, ids, 10, 90):
            raise RuntimeError("the daemons did not start publishing")
        for k in range(args.kills):
            # The node most daemons are on (they stay where they failed over to), so every
            # kill moves some; the consumer follows when it is its node.
            where = [current_server(logs[n]) for n in ids]
            victim = max(range(3), key=lambda i: (where.count(servers[i]), -i))
            dead = servers[victim]
            on_it = [n for n in ids if current_server(logs[n]) == dead]
            t_kill = time.time()
            cluster.nodes[victim].kill()
            alive = [n.mqtt_port for n in cluster.nodes if n.alive()]
            ready = accepting_again(alive, 60)
            took = []
            for nid in on_it:
                back = logs[nid].wait_for("mqtt: connected to ", t_kill, 60)
                if back is None:
                    errors.append(f"kill {k}: {nid} did not reconnect in 60 s")
                    continue
                took.append(back - t_kill)
                if ready is not None:
                    edged_share.append(max(0.0, back - ready))
            from_kill += took
            if ready is not None:
                broker_share.append(ready - t_kill)
            print(f"kill {k + 1}: {cluster.nodes[victim].name}, {len(on_it)} daemons on it, "
                  f"cluster accepting again after "
                  f"{(ready - t_kill) if ready else float('nan'):.1f} s, daemons back after "
                  f"{', '.join(f'{x:.1f}' for x in took) or '-'} s", flush=True)
            if not flowing(sub, ids, 5, 60):
                errors.append(f"kill {k}: results did not flow again within 60 s")
            cluster.restart(victim)
            if not flowing(sub, ids, 5, 60):
                errors.append(f"kill {k}: results did not flow after the restart")
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for nid, proc in procs.items():
            if proc.wait(90) != 0:
                errors.append(f"{nid} exited with {proc.returncode}")
        made = left = delivered = duplicates = 0
        for nid in ids:
            m, lft = made_and_left(work / f"{nid}.db")
            sub.wait_for(lambda nid=nid, m=m: len({r["seq"] for r in sub.results(nid)}) >= m, 30)
            seqs = [r["seq"] for r in sub.results(nid)]
            made, left = made + m, left + lft
            delivered += len(set(seqs) & set(range(m)))
            duplicates += len(seqs) - len(set(seqs))
        return {"from_kill": from_kill, "broker_share": broker_share,
                "edged_share": edged_share, "made": made, "delivered": delivered,
                "duplicates": duplicates, "left_in_outboxes": left, "errors": errors}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        sub.stop()
        cluster.stop()


def carry(port: int, protocol: int, seconds: float, size: int = 400) -> float:
    """Messages/s one paho publisher (QoS 1, 200 in flight) gets through to one subscriber."""
    got = [0]
    first, last = [0.0], [0.0]
    ready = threading.Event()

    def on_message(c, u, m) -> None:  # noqa: ANN001
        if not got[0]:
            first[0] = time.monotonic()
        got[0] += 1
        last[0] = time.monotonic()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="carry-sub", protocol=protocol)
    sub.on_connect = lambda c, *a: c.subscribe("carry/#", qos=1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    ready.wait(10)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="carry-pub", protocol=protocol)
    pub.max_inflight_messages_set(200)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    payload = json.dumps({"pad": "x" * size}).encode()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        info = pub.publish("carry/node/cam/result", payload, qos=1)
        if info.rc != 0:
            time.sleep(0.01)
        # paho queues without bound: keep the backlog short so the rate is the broker's
        while len(pub._out_messages) > 1000:  # noqa: SLF001
            time.sleep(0.001)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pub._out_messages):  # noqa: SLF001
        time.sleep(0.05)
    time.sleep(1.0)
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return got[0] / max(last[0] - first[0], 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--daemons", type=int, default=6)
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--carry-seconds", type=float, default=8.0)
    args = ap.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="edged-cluster-bench-") as tmp:
        work = Path(tmp)
        (work / "failover").mkdir()
        r = failover_round(args, work / "failover")
        mosq = Mosquitto(work).start()
        try:
            mosq_rate = carry(mosq.port, mqtt.MQTTv311, args.carry_seconds)
        finally:
            mosq.stop()
        (work / "one").mkdir()
        one = NatsCluster(work / "one", size=1).start()
        try:
            nats_rate = carry(one.nodes[0].mqtt_port, mqtt.MQTTv311, args.carry_seconds)
        finally:
            one.stop()

    def med_max(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.1f} s, max {max(xs):.1f} s (n={len(xs)})" \
            if xs else "-"
    print(f"failover from the kill: {med_max(r['from_kill'])}")
    print(f"  the cluster accepting clients again: {med_max(r['broker_share'])}")
    print(f"  then edged connected: {med_max(r['edged_share'])}")
    print(f"results delivered / expected: {r['delivered']} / {r['made']} "
          f"({r['delivered'] / max(r['made'], 1):.4f}); duplicates {r['duplicates']}; "
          f"left in outboxes {r['left_in_outboxes']}")
    for e in r["errors"]:
        print("error:", e)
    print(f"one node carries (QoS 1, ~400 B, one paho publisher -> one subscriber): "
          f"mosquitto {mosq_rate:.0f} msg/s, NATS (standalone, JetStream) {nats_rate:.0f} msg/s")


if __name__ == "__main__":
    main()
