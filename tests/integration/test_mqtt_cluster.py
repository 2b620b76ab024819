"""A fleet on a real 3-node NATS cluster (MQTT + JetStream, 3 replicas): mqtt.servers failover,
the durable outbox replaying on whichever node edged reaches, and availability from the status
heartbeat rather than the last will alone (a dead node never sends its clients' wills)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

from edged.mqtt.heartbeat import STALE_AFTER, is_stale
from tests.conftest import demo_config, start_edged, write_config
from tests.helpers.durable import first_seen
from tests.helpers.nats_cluster import (ClusterSubscriber, DaemonLog, NatsCluster,
                                         accepting_again)

# mqtt.status.interval_s in this test. 3 intervals must exceed what the cluster itself takes to
# deliver again after a node loss (JetStream elects new stream leaders: about 4 s here).
INTERVAL = 2.0
BACKOFF_MAX = 1.0  # mqtt.reconnect.max_s


def cluster_config(servers: list[str], node_id: str, outbox: Path, fps: int = 10) -> dict:
    """The demo video looped at `fps`, on the cluster (MQTT 3.1.1, QoS 1), 1 s heartbeat."""
    cfg = demo_config(0, loop=True, fps=fps)
    cfg["node_id"] = node_id
    cfg["models"]["default"]["workers"] = 1
    mqtt = cfg["mqtt"]
    del mqtt["host"], mqtt["port"]
    mqtt.update({"servers": servers, "protocol": "v3.1.1",
                 "reconnect": {"initial_s": 0.2, "max_s": BACKOFF_MAX},
                 "status": {"interval_s": INTERVAL}, "outbox": {"path": str(outbox)},
                 "drain_timeout_s": 20})
    return cfg


class AvailabilityView:
    """What a consumer believes, sampled every 0.1 s: online iff the latest status is
    `online` and younger than 3 intervals (heartbeat.is_stale)."""

    def __init__(self, sub: ClusterSubscriber, node_ids: list[str]) -> None:
        self._sub, self._ids = sub, node_ids
        self.samples: dict[str, list[tuple[float, bool]]] = {n: [] for n in node_ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="availability-view", daemon=True)

    def online(self, node_id: str, now: float | None = None) -> bool:
        statuses = self._sub.statuses(node_id)
        return bool(statuses) and not is_stale(statuses[-1].payload, now or time.time())

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = time.time()
            for n in self._ids:
                self.samples[n].append((now, self.online(n, now)))

    def start(self) -> AvailabilityView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def assert_view_true(view: AvailabilityView, sub: ClusterSubscriber, node_id: str,
                     since: float, until: float) -> None:
    """No false alarm: whenever results from `node_id` reached the consumer without a pause
    for the last 3 intervals, the view says online. (The other direction, a dead daemon shown
    offline within 3 intervals although its retained status says online, is the hang check;
    right after a reconnect results may wait for the replay while the heartbeat is already
    back, so "no result lately" alone is not "offline".)"""
    arrivals = sub.result_arrivals(node_id)
    window = STALE_AFTER * INTERVAL
    for t, up in view.samples[node_id]:
        if not since <= t <= until:
            continue
        before = [a for a in arrivals if a <= t]
        recent = [t - window] + [a for a in before if a >= t - window] + [t]
        flowing = max(b - a for a, b in zip(recent, recent[1:])) <= 0.5
        if flowing:
            assert up, f"{node_id} shown offline at {t:.1f} while its results flowed"


def _server_in(line: str) -> str:
    """'... mqtt: connected to 127.0.0.1:1234 (server 2 of 3)' -> '127.0.0.1:1234'."""
    return line.split("connected to ", 1)[1].split()[0]


def _current_server(log: DaemonLog) -> str:
    return _server_in(log.matching("mqtt: connected to ")[-1][1])


def _failover(log: DaemonLog, dead: str, after: float, ready: float) -> float:
    """Seconds from when the cluster accepted clients again (`ready`, after the node kill at
    `after`) until the daemon on the dead node was connected to another one; the daemon says
    which server it is on. The wait for the cluster itself (JetStream re-electing its stream
    leaders, several seconds) is the broker's share, measured in BENCHMARKS.md. (The
    disconnect line itself may be held back: the log shows one identical warning a minute.)"""
    limit = max(ready - after, 0) + BACKOFF_MAX + 5
    assert log.wait_for("mqtt: connected to ", after, limit + 2) is not None, \
        f"no other server reached within {BACKOFF_MAX + 5} s of the cluster accepting clients"
    back, line = log.matching("mqtt: connected to ", after)[0]
    assert _server_in(line) != dead and "(server " in line and " of 3)" in line
    took = back - max(ready, after)
    assert took <= BACKOFF_MAX + 5, f"took {took:.1f} s after the cluster accepted clients"
    return took


def _made(outbox: Path) -> int:
    """How many results the daemon made for `conveyor` (the outbox keeps the next seq)."""
    with sqlite3.connect(outbox) as db:
        row = db.execute("SELECT next FROM seqs WHERE camera = 'conveyor'").fetchone()
        left = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert left == 0, f"{left} results were never acknowledged by the cluster"
    return row[0]


def _flowing(sub: ClusterSubscriber, node_id: str, more: int, timeout: float) -> bool:
    now = max((r["seq"] for r in sub.results(node_id)), default=-1)
    return sub.wait_for(lambda: max((r["seq"] for r in sub.results(node_id)), default=-1)
                        >= now + more, timeout)


def test_two_daemons_fail_over_across_a_nats_cluster_and_lose_nothing(tmp_path):
    cluster = NatsCluster(tmp_path).start()
    n1, n2, n3 = cluster.mqtt_servers
    sub = ClusterSubscriber([n3, n1, n2]).start()  # the consumer sits on the third node
    view = AvailabilityView(sub, ["cam-a", "cam-b"]).start()
    outboxes = {"cam-a": tmp_path / "a.db", "cam-b": tmp_path / "b.db"}
    lists = {"cam-a": [n1, n2, n3], "cam-b": [n2, n3, n1]}  # a starts on n1, b on n2
    procs = {nid: start_edged("run", "-c", str(write_config(
        tmp_path / f"{nid}.yaml", cluster_config(lists[nid], nid, outboxes[nid]))))
        for nid in lists}
    logs = {nid: DaemonLog(proc, nid) for nid, proc in procs.items()}
    try:
        for nid in procs:
            assert _flowing(sub, nid, 20, 60), f"{nid} did not start"
        assert _current_server(logs["cam-a"]) == n1 and _current_server(logs["cam-b"]) == n2
        t0 = time.time()

        # 1. Kill the node daemon a is on: it moves on (to the next in its list) within its
        # backoff plus 5 s, and its results flow again.
        t_kill = time.time()
        cluster.nodes[0].kill()
        ready = accepting_again([cluster.nodes[1].mqtt_port, cluster.nodes[2].mqtt_port], 30)
        assert ready is not None, "the cluster did not accept clients again after a node loss"
        _failover(logs["cam-a"], n1, t_kill, ready)
        for nid in procs:
            assert _flowing(sub, nid, 20, 30), f"{nid}: results stopped after the node loss"

        # 2. A daemon that hangs (its connection stays open, so no last will for 1.5
        # keepalives): the retained status still says online, the view turns offline.
        procs["cam-b"].send_signal(signal.SIGSTOP)
        t_hang = time.time()
        try:
            assert sub.wait_for(lambda: not view.online("cam-b"), STALE_AFTER * INTERVAL + 3)
            assert sub.statuses("cam-b")[-1].payload["state"] == "online"  # stale, retained
        finally:
            procs["cam-b"].send_signal(signal.SIGCONT)
        assert time.time() - t_hang <= STALE_AFTER * INTERVAL + 3
        assert sub.wait_for(lambda: view.online("cam-b"), STALE_AFTER * INTERVAL + 3)

        # 3. Bring n1 back, then kill the node daemon b is on now (if it is the consumer's,
        # the consumer moves too, and its persistent session with it).
        cluster.restart(0)
        assert _flowing(sub, "cam-a", 10, 30) and _flowing(sub, "cam-b", 10, 30)
        victim = _current_server(logs["cam-b"])
        on_victim = [nid for nid in procs if _current_server(logs[nid]) == victim]
        t_kill2 = time.time()
        cluster.nodes[cluster.mqtt_servers.index(victim)].kill()
        ready = accepting_again([n.mqtt_port for n in cluster.nodes if n.alive()], 30)
        assert ready is not None, "the cluster did not accept clients again after a node loss"
        for nid in on_victim:
            _failover(logs[nid], victim, t_kill2, ready)
        for nid in procs:
            assert _flowing(sub, nid, 20, 30), f"{nid}: results stopped after the node loss"
        t_end = time.time()

        for nid in procs:
            assert_view_true(view, sub, nid, t0, t_end)

        # 4. A clean stop: each daemon drains its outbox to the cluster; every seq it made
        # reaches the consumer, at least once, first arrivals in order.
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for nid, proc in procs.items():
            assert proc.wait(40) == 0, logs[nid].text()
            logs[nid].join(5)
            assert "Traceback" not in logs[nid].text()
        for nid in procs:
            made = _made(outboxes[nid])
            assert sub.wait_for(lambda nid=nid, made=made: len(
                {r["seq"] for r in sub.results(nid)}) >= made, 30), \
                f"{nid}: {made - len({r['seq'] for r in sub.results(nid)})} results missing"
            firsts = first_seen([r["seq"] for r in sub.results(nid)])
            assert firsts == list(range(made)), f"{nid}: a result is missing or out of order"
    except BaseException:
        for nid, log in logs.items():
            print(f"--- {nid} log ---\n" + "\n".join(log.text().splitlines()[-40:]))
        raise
    finally:
        view.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        sub.stop()
        cluster.stop()


def test_a_broker_that_refuses_mqtt_v5_names_the_key_to_change(tmp_path):
    """NATS speaks MQTT 3.1.1 only: edged keeps retrying and says to set mqtt.protocol."""
    cluster = NatsCluster(tmp_path, size=1)
    node = cluster.nodes[0]
    cluster.start()
    cfg = cluster_config([node.mqtt_server], "cam-v5", tmp_path / "o.db")
    cfg["mqtt"]["protocol"] = "v5"
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        time.sleep(6)
        assert proc.poll() is None, "a refusing broker must not stop the daemon"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err
        assert "refuses MQTT v5 (Unsupported protocol version): set mqtt.protocol: v3.1.1" in err
        assert err.count("refuses MQTT v5") == 1, "once per change of reason, not per retry"
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.stop()

