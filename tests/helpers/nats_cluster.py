"""A real 3-node NATS cluster with MQTT on loopback, started, killed and restarted by the tests.

Each node: a server_name, cluster routes to the others, JetStream (store under the test's tmp
folder) and an MQTT listener. The MQTT session and retained-message streams get 3 replicas
(`stream_replicas`), so losing one node blocks neither new connections nor retained messages.
NATS 2.9 speaks MQTT 3.1.1 with QoS 0/1 only, so clients use protocol v3.1.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edged.config import split_server
from edged.mqtt.servers import ServerList
from tests.helpers.broker import free_port
from tests.helpers.subscriber import wait_on


def nats_binary() -> str:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                            if os.path.exists("/usr/sbin/nats-server") else None)
    if not found:
        raise RuntimeError("nats-server is not installed: run scripts/setup.sh")
    return found


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def mqtt_server(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"

    def write_conf(self, routes: list[int]) -> Path:
        store = self.workdir / f"js-{self.name}"
        store.mkdir(exist_ok=True)
        conf = self.workdir / f"nats-{self.name}.conf"
        text = (f'server_name: {self.name}\n'
                f'listen: 127.0.0.1:{self.client_port}\n'
                f'http: 127.0.0.1:{self.http_port}\n'
                f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, '
                f'max_file_store: 512MB }}\n')
        if len(routes) > 1:  # a cluster; one node alone runs standalone (replicas 1)
            route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            text += (f'cluster {{ name: edged-test, listen: 127.0.0.1:{self.route_port}, '
                     f'routes: [{route_urls}] }}\n')
        text += (f'mqtt {{ listen: 127.0.0.1:{self.mqtt_port}, '
                 f'stream_replicas: {min(3, len(routes))} }}\n')
        conf.write_text(text)
        return conf

    def start(self, routes: list[int]) -> None:
        conf = self.write_conf(routes)
        log = open(self.workdir / f"nats-{self.name}.log", "ab")
        self.proc = subprocess.Popen([nats_binary(), "-c", str(conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, server_only: bool = False) -> bool:
        """JetStream is up and current on this node (/healthz). `server_only`: its meta layer
        only; a node that rejoins may report a stale consumer replica as not current for
        a long time while MQTT already works (nats-server 2.9)."""
        query = "?js-server-only=true" if server_only else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz{query}",
                                        timeout=1) as resp:
                return json.load(resp).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: the node dies without a word (no last wills, no goodbyes)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class NatsCluster:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.nodes = [NatsNode(f"n{i + 1}", workdir) for i in range(size)]

    @property
    def mqtt_servers(self) -> list[str]:
        return [n.mqtt_server for n in self.nodes]

    def _routes(self) -> list[int]:
        return [n.route_port for n in self.nodes]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            node.start(self._routes())
        self.wait_ready(self.nodes, timeout)
        return self

    def wait_ready(self, nodes: list[NatsNode], timeout: float,
                   server_only: bool = False) -> None:
        """Healthy JetStream on each, then an MQTT client accepted on each (the first MQTT
        connect creates the replicated MQTT streams, which takes a few seconds)."""
        deadline = time.monotonic() + timeout
        for node in nodes:
            while not node.healthy(server_only):
                if not node.alive():
                    raise RuntimeError(f"nats-server {node.name} exited; see its log in "
                                       f"{self.workdir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {node.name} not healthy in {timeout} s")
                time.sleep(0.1)
        for node in nodes:
            while not mqtt_accepts(node.mqtt_port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {node.name}: MQTT not ready in {timeout} s")
                time.sleep(0.2)

    def restart(self, index: int, timeout: float = 60.0) -> None:
        node = self.nodes[index]
        node.start(self._routes())  # same ports and store: it rejoins and catches up
        self.wait_ready([node], timeout, server_only=True)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def mqtt_accepts(port: int, timeout: float = 3.0) -> bool:
    """Whether an MQTT 3.1.1 client gets a successful CONNACK from 127.0.0.1:port."""
    ok = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"probe-{port}-{time.monotonic_ns()}", protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, u, f, rc, p: ok.set() if not rc.is_failure else None
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        return ok.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def accepting_again(ports: list[int], timeout: float) -> float | None:
    """When (time.time()) one of `ports` first accepts a new MQTT client: after a node loss
    the survivors stall connects (up to 4 s each) until JetStream has new stream leaders.
    One probing thread per port, so a stalled node does not hide a ready one."""
    deadline = time.monotonic() + timeout
    found: list[float] = []
    done = threading.Event()

    def probe(port: int) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            if mqtt_accepts(port, timeout=5.0):
                found.append(time.time())
                done.set()
                return
            done.wait(0.05)

    threads = [threading.Thread(target=probe, args=(p,), name=f"probe-{p}", daemon=True)
               for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 6)
    return min(found) if found else None


@dataclass
class Received:
    topic: str
    payload: dict
    at: float  # time.time() on arrival


class ClusterSubscriber:
    """MQTT 3.1.1 with a persistent session (clean_session False), on the first of `servers`:
    records every result and status with its arrival time. Like any consumer of a cluster it
    moves to the next node when its node goes (edged's own ServerList does the rotation)."""

    def __init__(self, servers: list[str], topic: str = "edged/#",
                 client_id: str = "cluster-sub") -> None:
        self.servers = ServerList([split_server(s) for s in servers])
        self.topic = topic
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda c, *a: self._next(c)
        self.client.on_connect_fail = lambda c, *a: self._next(c)

    def _next(self, client: mqtt.Client) -> None:
        self.servers.advance()
        self.servers.apply(client)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            self.messages.append(Received(msg.topic, payload, time.time()))
            self._cond.notify_all()

    def start(self) -> ClusterSubscriber:
        first = self.servers.current
        self.client.connect(first.host, first.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe")
        return self

    def stop(self) -> None:
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()

    def results(self, node_id: str) -> list[dict]:
        with self._cond:
            return [m.payload for m in self.messages
                    if m.topic.endswith("/result") and m.payload.get("node_id") == node_id]

    def result_arrivals(self, node_id: str) -> list[float]:
        with self._cond:
            return [m.at for m in self.messages
                    if m.topic.endswith("/result") and m.payload.get("node_id") == node_id]

    def statuses(self, node_id: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == f"edged/{node_id}/status"]

    def wait_for(self, predicate, timeout: float) -> bool:  # noqa: ANN001
        return wait_on(self._cond, predicate, timeout)


class DaemonLog:
    """Reads a daemon's stderr on a named thread, keeping each line with its arrival time."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"log-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # ends when the daemon exits
            with self._cond:
                self.lines.append((time.time(), line.rstrip("\n")))
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def matching(self, needle: str, after: float = 0.0) -> list[tuple[float, str]]:
        with self._cond:
            return [(t, line) for t, line in self.lines if t > after and needle in line]

    def wait_for(self, needle: str, after: float, timeout: float) -> float | None:
        """Arrival time of the first line after `after` containing `needle`, or None."""
        found: list[float] = []

        def seen() -> bool:
            found[:] = [t for t, _ in self.matching(needle, after)][:1]
            return bool(found)

        return found[0] if wait_on(self._cond, seen, timeout) else None

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
