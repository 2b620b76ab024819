"""A tiny MQTT broker stand-in on 127.0.0.1 that refuses things the way real brokers do.

Real brokers behave like this in the field (field notes): NATS speaks MQTT 3.1.1 with QoS 0/1
only, answers a v5 CONNECT with a 3.1.1 CONNACK "unacceptable protocol version" and drops
the connection on a QoS 2 PUBLISH; other brokers close the socket before any CONNACK (a
banned client id, a connection limit). mosquitto cannot be configured to do any of that, so
this speaks just enough MQTT 3.1.1 and 5 (CONNECT/CONNACK, PUBLISH with PUBACK/PUBREC/
PUBREL/PUBCOMP, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT) to be a real peer for paho.
It does not route messages; it records what it got.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 8, 9, 12, 13, 14


@dataclass
class Received:
    topic: str
    qos: int
    payload: bytes


@dataclass
class Connection:
    protocol_level: int
    client_id: str
    opened: float
    closed: float | None = None
    outcome: str = "open"  # refused, dropped_qos, client_closed, ...


@dataclass
class FakeBroker:
    """`accept_levels`: CONNECT protocol levels accepted (4 = 3.1.1, 5 = v5). A refused
    level gets a 3.1.1 CONNACK 0x01 (`refuse_with="connack"`) or a closed socket
    (`refuse_with="close"`). `close_before_connack`: every CONNECT gets a closed socket.
    `max_qos`: a PUBLISH above it drops the connection (as NATS does for QoS 2).
    `v5_limits`: as a v5 broker should instead, advertise `max_qos` in the CONNACK (Maximum
    QoS) and send DISCONNECT 0x9B "QoS not supported" before closing."""

    accept_levels: tuple[int, ...] = (4, 5)
    refuse_with: str = "connack"
    close_before_connack: bool = False
    max_qos: int = 2
    v5_limits: bool = False
    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeBroker:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        srv.settimeout(0.2)
        self.port = srv.getsockname()[1]
        self._server = srv
        t = threading.Thread(target=self._accept, name=f"fake-broker-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        if self._server is not None:
            self._server.close()

    def snapshot(self) -> tuple[list[Connection], list[Received]]:
        with self._lock:
            return list(self.connections), list(self.received)

    # --- the server ----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
                self._threads = alive
                if len(alive) > 64:  # bounded: a runaway client cannot exhaust threads
                    conn.close()
                    continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"fake-broker-conn-{self.port}")
            t.start()
            with self._lock:
                self._threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(0.5)
        record: Connection | None = None
        try:
            ptype, _, body = self._read_packet(sock)
            if ptype != _CONNECT:
                return
            level, client_id = _parse_connect(body)
            record = Connection(level, client_id, time.monotonic())
            with self._lock:
                self.connections.append(record)
            if self.close_before_connack:
                record.outcome = "closed_before_connack"
                return
            if level not in self.accept_levels:
                record.outcome = "refused_protocol"
                if self.refuse_with == "connack":
                    sock.sendall(bytes([_CONNACK << 4, 2, 0, 1]))  # 3.1.1: 0x01 protocol
                    time.sleep(0.05)
                return
            v5 = level == 5
            if v5 and self.v5_limits:  # properties: Maximum QoS (0x24)
                sock.sendall(bytes([_CONNACK << 4, 5, 0, 0, 2, 0x24, self.max_qos]))
            else:
                sock.sendall(bytes([_CONNACK << 4, 3, 0, 0, 0]) if v5
                             else bytes([_CONNACK << 4, 2, 0, 0]))
            self._session(sock, v5, record)
        except (OSError, ValueError, struct.error):
            if record is not None and record.outcome == "open":
                record.outcome = "error"
        finally:
            if record is not None:
                record.closed = time.monotonic()
            try:
                sock.close()
            except OSError:
                pass

    def _session(self, sock: socket.socket, v5: bool, record: Connection) -> None:
        while not self._stop.is_set():
            try:
                ptype, flags, body = self._read_packet(sock)
            except (TimeoutError, socket.timeout):
                continue
            if ptype == _PUBLISH:
                qos = (flags >> 1) & 3
                topic, pid, payload = _parse_publish(body, qos, v5)
                if qos > self.max_qos:
                    record.outcome = f"dropped_qos{qos}"
                    if v5 and self.v5_limits:
                        sock.sendall(bytes([_DISCONNECT << 4, 2, 0x9B, 0]))
                    return  # else close without a word, as NATS does
                with self._lock:
                    self.received.append(Received(topic, qos, payload))
                if qos == 1:
                    sock.sendall(bytes([_PUBACK << 4, 2]) + struct.pack("!H", pid))
                elif qos == 2:
                    sock.sendall(bytes([_PUBREC << 4, 2]) + struct.pack("!H", pid))
            elif ptype == _PUBREL:
                sock.sendall(bytes([_PUBCOMP << 4, 2]) + body[:2])
            elif ptype == _SUBSCRIBE:
                pid = body[:2]
                pos = 2
                if v5:
                    plen, pos = _varint(body, pos)
                    pos += plen
                granted = []
                while pos < len(body):
                    (n,) = struct.unpack_from("!H", body, pos)
                    pos += 2 + n
                    granted.append(min(body[pos] & 3, self.max_qos))
                    pos += 1
                rest = (b"\x00" if v5 else b"") + bytes(granted)
                sock.sendall(bytes([_SUBACK << 4]) + _encode_len(2 + len(rest)) + pid + rest)
            elif ptype == _PINGREQ:
                sock.sendall(bytes([_PINGRESP << 4, 0]))
            elif ptype == _DISCONNECT:
                record.outcome = "client_closed"
                return

    def _read_packet(self, sock: socket.socket) -> tuple[int, int, bytes]:
        first = _recv_exact(sock, 1, self._stop)
        length, mult = 0, 1
        for _ in range(4):
            b = _recv_exact(sock, 1, self._stop)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        if length > 1024 * 1024:
            raise ValueError("packet too large for the stand-in")
        return first[0] >> 4, first[0] & 0x0F, _recv_exact(sock, length, self._stop)


def _recv_exact(sock: socket.socket, n: int, stop: threading.Event) -> bytes:
    buf = b""
    while len(buf) < n:
        if stop.is_set():
            raise OSError("stopping")
        try:
            chunk = sock.recv(n - len(buf))
        except (TimeoutError, socket.timeout):
            if not buf:
                raise
            continue
        if not chunk:
            raise OSError("closed by the client")
        buf += chunk
    return buf


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        b = data[pos]
        pos += 1
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return value, pos


def _encode_len(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _parse_connect(body: bytes) -> tuple[int, str]:
    (n,) = struct.unpack_from("!H", body, 0)
    pos = 2 + n  # protocol name
    level = body[pos]
    pos += 1 + 1 + 2  # level, flags, keepalive
    if level == 5:
        plen, pos = _varint(body, pos)
        pos += plen
    (n,) = struct.unpack_from("!H", body, pos)
    return level, body[pos + 2:pos + 2 + n].decode("utf-8", "replace")


def _parse_publish(body: bytes, qos: int, v5: bool) -> tuple[str, int, bytes]:
    (n,) = struct.unpack_from("!H", body, 0)
    topic = body[2:2 + n].decode("utf-8", "replace")
    pos = 2 + n
    pid = 0
    if qos:
        (pid,) = struct.unpack_from("!H", body, pos)
        pos += 2
    if v5:
        plen, pos = _varint(body, pos)
        pos += plen
    return topic, pid, body[pos:]
