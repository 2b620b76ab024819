"""What the broker connection really does, told honestly (README: MQTT, "When the broker
refuses").

paho reports attempts, CONNACKs, disconnects and acknowledgements; this turns them into:
- one log line per change of the reason a connection fails (the broker's own reason when it
  gave one), including a socket the broker closes before any CONNACK, with a hint naming the
  config key to change (a refused protocol version names `mqtt.protocol` and the other value);
- "connected" once per connection;
- a broker that accepts the connection but drops it right after a publish, connection after
  connection, without acknowledging a publish of that QoS (NATS does this with QoS 2): after
  `strikes` such connections it is "stuck", which makes /readyz not ready with the reason and
  the QoS to lower, keeps `edged_mqtt_connected` at 0, and backs the reconnects off
  exponentially (paho would otherwise reconnect at the initial delay after every CONNACK).

It only keeps state and logs; the sink owns the client. Callbacks come from paho's thread,
properties are read by others, so everything is under one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

_QOS_NOT_SUPPORTED = 155  # DISCONNECT "QoS not supported" (MQTT v5)
_PROTOCOL_REFUSED = 132  # CONNACK "Unsupported protocol version" (paho maps 3.1.1's 0x01 too)
_OTHER_PROTOCOL = {"v5": "v3.1.1", "v3.1.1": "v5"}
_REFUSAL_HINTS = {
    133: " (check mqtt.client_id: the broker refuses this client id)",
    134: " (check mqtt.username and its password)",
    135: " (check mqtt.username, its password and the broker's ACL)",
    4: " (check mqtt.username and its password)",
    5: " (check mqtt.username, its password and the broker's ACL)",
}
# Which config key sets the QoS of each topic class (to name it when the broker refuses one).
_QOS_KEYS = {"result": "mqtt.qos", "state": "mqtt.state.qos", "status": "mqtt.status.qos",
             "snapshot": "cameras.<name>.snapshot.qos", "capture": "capture.qos"}
# Kinds of failure that /readyz reports besides "not connected": the broker answers, but no.
_REPORTED = {"protocol", "refused", "closed_before_connack"}
FAILURE_REASONS = ("unreachable", "refused", "protocol", "closed_before_connack", "lost",
                   "dropped_after_publish")
_MAX_TRACKED = 100_000  # in-flight publishes remembered (paho's own window is far smaller)


class ConnectionHealth:
    def __init__(self, host: str, port: int, protocol: str, log: logging.Logger,
                 metrics=None, strikes: int = 3, remind_s: float = 300.0,  # noqa: ANN001
                 clock: Callable[[], float] = time.monotonic,
                 qos_settings: dict[str, int] | None = None,
                 where: str | None = None,
                 hint: Callable[[object], str] | None = None) -> None:
        """`qos_settings`: config key -> QoS, checked against a v5 CONNACK's Maximum QoS.
        `where`: how to name the broker (default host:port); `hint`: more key-naming hints
        for a broker's reason code (edged.mqtt.brokers)."""
        self._where = where or f"{host}:{port}"
        self._hint = hint or (lambda _: "")
        self._qos_settings = dict(qos_settings or {})
        self._qos_limit: str | None = None  # the broker's Maximum QoS is below a setting
        self._protocol = protocol
        self._log = log
        self._metrics = metrics  # Metrics: mqtt_connected, mqtt_connection_failures
        self._strike_limit = strikes
        self._remind_s = remind_s
        self._clock = clock
        self._lock = threading.Lock()
        self._phase = "idle"  # idle -> attempt -> connected | refused -> idle
        self._last_reason: str | None = None  # the last failure logged, until a connection
        self._last_logged = 0.0
        self._repeats = 0
        self._kind: str | None = None  # kind of the current failure, None while connected
        self._problem: str | None = None  # what /readyz says about the current failure
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (qos, topic class)
        self._early: set[int] = set()  # acks seen before the sink recorded the send
        self._acked_qos: set[int] = set()  # QoS levels acknowledged on this connection
        # ... on any connection so far: a QoS the broker (or cluster, with mqtt.servers) has
        # acknowledged is supported, so a later drop with such publishes in flight (a cluster
        # node stalling while it re-elects) is a lost connection, not evidence against it.
        self._ever_acked_qos: set[int] = set()
        self._strikes = 0
        self._suspect: tuple[int, tuple[str, ...]] | None = None  # (qos, classes) not acked
        self._stuck: str | None = None
        if metrics is not None:
            for reason in FAILURE_REASONS:
                metrics.mqtt_connection_failures.labels(reason)

    def at(self, where: str) -> None:
        """The next attempts go to another broker (mqtt.servers): name that one from now on."""
        with self._lock:
            self._where = where

    # --- from paho's callbacks ---------------------------------------------------------------

    def attempt(self) -> None:
        """A connection attempt starts (on_pre_connect)."""
        with self._lock:
            self._phase = "attempt"

    def unreachable(self, why: str) -> None:
        """The TCP/TLS connection failed (on_connect_fail); `why` starts with ': ' or is ''."""
        with self._lock:
            self._phase = "idle"
            self._fail("unreachable", f"cannot reach broker {self._where}{why}; retrying")

    def refused(self, reason_code: object) -> None:
        """A CONNACK with a failure code."""
        value = getattr(reason_code, "value", None)
        with self._lock:
            self._phase = "refused"
            if value == _PROTOCOL_REFUSED:
                other = _OTHER_PROTOCOL[self._protocol]
                self._fail("protocol", f"broker {self._where} refuses MQTT {self._protocol} "
                           f"({reason_code}): set mqtt.protocol: {other}")
            else:
                hint = _REFUSAL_HINTS.get(value) or self._hint(reason_code)
                self._fail("refused", f"broker {self._where} refused the connection: "
                           f"{reason_code}{hint}")

    def connected(self, max_qos: int | None = None) -> None:
        """A CONNACK with success; `max_qos`: its Maximum QoS property (MQTT v5), if any."""
        too_high = sorted(k for k, v in self._qos_settings.items()
                          if max_qos is not None and v > max_qos)
        limit = (f"broker {self._where} accepts QoS up to {max_qos} (its CONNACK says so): set "
                 + ", ".join(f"{k}: {max_qos}" for k in too_high)) if too_high else None
        if limit is not None and limit != self._qos_limit:
            self._log.warning("mqtt: %s", limit)
        with self._lock:
            self._qos_limit = limit
            self._phase = "connected"
            self._acked_qos = set()
            self._kind = self._problem = None
            self._last_reason, self._repeats = None, 0
            usable = self._stuck is None
            suspect = self._suspect
        self._log.info("mqtt: connected to %s%s", self._where, "" if usable or suspect is None
                       else f" (not counted as connected until it acknowledges a QoS "
                            f"{suspect[0]} publish)")
        self._gauge(usable)

    def disconnected(self, reason_code: object, from_broker: bool, expected: bool) -> None:
        """on_disconnect (paho may call it twice for one connection: the second is ignored).
        `expected`: edged asked for it (stop, reload)."""
        self._gauge(False)
        self._disconnected(reason_code, from_broker, expected)

    def _disconnected(self, reason_code: object, from_broker: bool, expected: bool) -> None:
        with self._lock:
            phase, self._phase = self._phase, "idle"
            if phase in ("idle", "refused") or expected:
                return
            if phase == "attempt":
                hint = (" (it may not speak MQTT v5: try mqtt.protocol: v3.1.1)"
                        if self._protocol == "v5" else "")
                self._fail("closed_before_connack", f"broker {self._where} closed the connection "
                           f"before answering the CONNECT{hint}; its log says why (client id, "
                           "credentials, connection limits)")
                return
            said = (f"the broker said: {reason_code}{self._hint(reason_code)}" if from_broker
                    else "connection lost")
            # paho drops QoS 0 messages it had not sent yet; QoS 1 and 2 it sends again.
            self._inflight = {m: e for m, e in self._inflight.items() if e[0] > 0}
            said_so = from_broker and getattr(reason_code, "value", None) == _QOS_NOT_SUPPORTED
            known = self._acked_qos | (set() if said_so else self._ever_acked_qos)
            bad = sorted({qos for qos, _ in self._inflight.values()} - known)
            if not bad:  # nothing unacknowledged: no evidence against the broker's QoS
                self._strikes, self._suspect, self._stuck = 0, None, None
                self._fail("lost", f"disconnected from {self._where} ({said}); reconnecting")
                return
            qos = bad[-1]
            classes = tuple(sorted({c for q, c in self._inflight.values() if q == qos}))
            if said_so:
                self._strikes = max(self._strikes, self._strike_limit - 1)  # no need to guess
            self._strikes += 1
            self._suspect = (qos, classes)
            self._fail("dropped_after_publish", f"disconnected from {self._where} ({said}) with "
                       f"QoS {qos} publishes unacknowledged; reconnecting")
            newly_stuck = self._strikes >= self._strike_limit and self._stuck is None
            if self._strikes >= self._strike_limit:
                self._stuck = self._stuck_reason(qos, classes, said_so)
            stuck = self._stuck
        if newly_stuck:
            self._log.error("mqtt: %s", stuck)

    def sent(self, mid: int, qos: int, topic_class: str) -> None:
        """The sink handed a message to paho (its ack may already have come: `_early`)."""
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
                ack = True
            else:
                if len(self._inflight) >= _MAX_TRACKED:
                    self._inflight.pop(next(iter(self._inflight)))
                self._inflight[mid] = (qos, topic_class)
                ack = False
        if ack:
            self._acked_qos_seen(qos)

    def acked(self, mid: int) -> None:
        """paho's on_publish (QoS 0: sent; else acknowledged)."""
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                if len(self._early) >= _MAX_TRACKED:
                    self._early.clear()
                self._early.add(mid)
                return
        self._acked_qos_seen(entry[0])

    # --- for the sink, /readyz and the metric ----------------------------------------------

    @property
    def problem(self) -> str | None:
        """What /readyz adds to "not connected": the broker's refusal, being stuck, or a
        Maximum QoS below a configured QoS."""
        with self._lock:
            found = [p for p in (self._qos_limit, self._stuck, self._problem) if p]
        return "; ".join(found) or None

    @property
    def usable(self) -> bool:
        with self._lock:
            return self._stuck is None

    def backoff_factor(self) -> float:
        """Multiplier of the reconnect delays: doubles with every connection dropped after a
        publish (paho resets its own backoff at every CONNACK)."""
        with self._lock:
            return float(2 ** min(self._strikes, 16))

    # --- internals ---------------------------------------------------------------------------

    def _acked_qos_seen(self, qos: int) -> None:
        recovered = None
        with self._lock:
            self._acked_qos.add(qos)
            self._ever_acked_qos.add(qos)
            if self._suspect is not None and self._suspect[0] <= qos:
                self._strikes, self._suspect = 0, None
                recovered, self._stuck = self._stuck, None
            connected = self._phase == "connected"
        if recovered:
            self._log.info("mqtt: the broker acknowledges QoS %d publishes again", qos)
            self._gauge(connected)

    def _stuck_reason(self, qos: int, classes: tuple[str, ...], said_so: bool) -> str:
        keys = sorted({_QOS_KEYS[c] for c in classes if c in _QOS_KEYS}) or ["mqtt.qos"]
        lower = ", ".join(f"{key}: {qos - 1}" for key in keys)
        if said_so:
            return (f"broker {self._where} disconnects on QoS {qos} publishes (\"QoS not "
                    f"supported\"); set {lower}")
        return (f"broker {self._where} closes the connection right after QoS {qos} publishes "
                f"({self._strikes} connections in a row, none acknowledged): it may not "
                f"support QoS {qos}; set {lower}")

    def _fail(self, kind: str, reason: str) -> None:
        """Log `reason` if it differs from the last one (else at most every remind_s); count
        it. Called with the lock held."""
        if self._metrics is not None:
            self._metrics.mqtt_connection_failures.labels(kind).inc()
        self._kind = kind
        self._problem = reason if kind in _REPORTED else None
        now = self._clock()
        if reason != self._last_reason or now - self._last_logged >= self._remind_s:
            more = f" ({self._repeats} more since)" if self._repeats else ""
            self._log.warning("mqtt: %s%s", reason, more)
            self._last_reason, self._last_logged, self._repeats = reason, now, 0
        else:
            self._repeats += 1

    def _gauge(self, value: bool) -> None:
        if self._metrics is not None:
            self._metrics.mqtt_connected.set(1 if value else 0)
