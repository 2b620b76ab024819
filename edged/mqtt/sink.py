"""MQTT sink on paho-mqtt 2.x: durable outbox, availability with a last will, TLS, auth.

Results at QoS >= 1 go to the on-disk outbox first (publish() only writes there); one named
sender thread feeds paho from the outbox in row order with a bounded in-flight window and
deletes rows once the broker acknowledged them. So the outbox is THE queue: a backlog from an
outage (or from before a crash) leaves in seq order, and live results queue behind it.
"""

from __future__ import annotations

import logging
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edged.config import MqttConfig
from edged.mqtt.connection_health import ConnectionHealth
from edged.errors import EdgedError
from edged.service.metrics import Metrics
from edged.mqtt.brokers import feature_hint
from edged.mqtt.heartbeat import Heartbeat
from edged.mqtt.outbox import Outbox, Row
from edged.mqtt.servers import ServerList
from edged.sinks.base import Sink
from edged.mqtt.contract import Message, Topics, properties, status_message

log = logging.getLogger(__name__)

SUBACK_WAIT_S = 3.0  # how long a subscribe made while connected waits for the broker
_PROTOCOLS = {"v5": mqtt.MQTTv5, "v3.1.1": mqtt.MQTTv311}

MessageHandler = Callable[[mqtt.MQTTMessage], None]


def tls_context(tls) -> ssl.SSLContext:  # noqa: ANN001 - TlsConfig
    """Verification on (system or given CAs) unless `insecure`; client cert for mTLS."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise EdgedError(f"mqtt.tls.ca_file: cannot load {tls.ca_file}: {exc}") from None
    if tls.cert_file:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise EdgedError(f"mqtt.tls.cert_file: cannot load the client certificate "
                             f"{tls.cert_file} / key {tls.key_file}: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MqttSink(Sink):
    key = "mqtt"

    def __init__(self, cfg: MqttConfig, topics: Topics, metrics: Metrics,
                 outbox: Outbox | None = None, password: str | None = None,
                 on_connected: Callable[[], None] | None = None,
                 on_beat: Callable[[], None] | None = None) -> None:
        self._cfg = cfg
        # Runs on the sender thread after each connect, before `online` is published: the
        # daemon turns it into the "broker connected" event that extensions join.
        self._on_connected = on_connected
        self.greetings = 0  # connect greetings begun (the daemon reads it once at start)
        # Likewise before each heartbeat's `online` (mqtt.status.interval_s): the "heartbeat"
        # event, on which the state is re-sent (Home Assistant's expire_after feeds on it).
        self._on_beat = on_beat
        self._servers = ServerList(cfg.server_list())
        self._heartbeat = Heartbeat(cfg.status.interval_s)
        self._topics = topics
        self._metrics = metrics
        self._outbox = outbox
        self._password = password
        self._client: mqtt.Client | None = None
        self._lock = threading.Condition()
        # mid -> (outbox row id or None, topic class), until acknowledged
        self._pending: dict[int, tuple[int | None, str]] = {}
        self._early: dict[int, object] = {}  # acks that arrived before publish() returned the mid
        self._acked_rows: list[int] = []  # acknowledged outbox rows, deleted by the sender
        self._rows_in_flight = 0
        self._connected = threading.Event()
        self._generation = 0  # bumped on every connect; the sender greets each one
        first = self._servers.current
        self._health = ConnectionHealth(
            first.host, first.port, cfg.protocol, log, metrics,
            qos_settings={"mqtt.qos": cfg.qos, "mqtt.state.qos": cfg.state.qos,
                          "mqtt.status.qos": cfg.status.qos},
            where=self._servers.describe(), hint=lambda rc: feature_hint(rc, cfg))
        self._rng = random.Random()
        self._subscriptions: list[tuple[str, int, MessageHandler]] = []
        self._subacks: dict[int, tuple[threading.Event, str]] = {}  # mid -> (acked, filter)
        self._suback_lock = threading.Lock()  # held across subscribe(): the mid is known
        self._network_thread: threading.Thread | None = None  # paho's loop (seen on connect)
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None

    @property
    def client_id(self) -> str:
        return self._cfg.client_id or f"edged-{self._topics.node_id}"

    @property
    def v5(self) -> bool:  # type: ignore[override]
        return self._cfg.protocol == "v5"

    # --- set-up by other components, before start() ------------------------------------------

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1,
                  wait_s: float = SUBACK_WAIT_S) -> None:
        """Subscribe on every connect; `handler` runs on paho's thread and must be quick.

        Made while connected (an extension a reload turned on), it waits up to `wait_s` for
        the broker's SUBACK, so that a command sent once the reload is done is not missed.
        """
        self._subscriptions.append((topic_filter, qos, handler))
        client = self._client
        if client is None or not self._connected.is_set():
            return
        acked = threading.Event()
        with self._suback_lock:
            result, mid = client.subscribe(topic_filter, qos=qos)
            sent = result == mqtt.MQTT_ERR_SUCCESS and mid is not None
            if sent:
                self._subacks[mid] = (acked, topic_filter)
        # Not sent (the connection just dropped): the next connect subscribes. Never wait on
        # paho's own thread: the SUBACK is read there.
        if sent and threading.current_thread() is not self._network_thread:
            if not acked.wait(wait_s):
                log.warning("mqtt: no SUBACK for %s within %.0f s; it is retried on the next "
                            "connect", topic_filter, wait_s)
        with self._suback_lock:
            self._subacks.pop(mid, None)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        with self._suback_lock:
            pending = self._subacks.get(mid)
        refused = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        if refused:  # e.g. not authorised: the extension would wait for nothing
            log.warning("mqtt: the broker refused the subscription to %s: %s",
                        pending[1] if pending else f"message {mid}", refused[0])
        if pending is not None:
            pending[0].set()

    def unsubscribe(self, handler: MessageHandler) -> None:
        gone = {f for f, _, h in self._subscriptions if h == handler}
        self._subscriptions = [s for s in self._subscriptions if s[2] != handler]
        gone -= {f for f, _, _ in self._subscriptions}
        client = self._client
        if client is not None and self._connected.is_set():
            for topic_filter in gone:
                client.unsubscribe(topic_filter)

    def request_greet(self) -> None:
        """Greet again: the connected event, then `online` (e.g. Home Assistant restarted)."""
        with self._lock:
            self._generation += 1
            self._lock.notify_all()

    def first_seq(self, camera: str) -> int:
        return self._outbox.next_seq(camera) if self._outbox is not None else 0

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self._cfg
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=_PROTOCOLS[cfg.protocol])
        if cfg.tls is not None:
            client.tls_set_context(tls_context(cfg.tls))
            if cfg.tls.insecure:
                client.tls_insecure_set(True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, self._password)
        will = self._status("offline")
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain,
                        properties=self._properties(will))
        self._set_backoff(client)
        # Room for state, status and replies besides the sender's window of results.
        client.max_inflight_messages_set(cfg.max_inflight + 100)
        client.max_queued_messages_set(0)  # unbounded: nothing accepted is dropped here
        client.on_pre_connect = lambda _client, _userdata: self._health.attempt()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if self._outbox is not None:
            self._outbox.open()
        self._client = client
        self._metrics.mqtt_connected.set(0)
        self._stop.clear()
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender",
                                         daemon=True)
        self._sender.start()
        # connect_async + loop_start: a broker that is down at start is retried, not fatal.
        first = self._servers.current
        client.connect_async(first.host, first.port, keepalive=cfg.keepalive_s)
        client.loop_start()

    def _set_backoff(self, client: mqtt.Client) -> None:
        # paho doubles from min to max; a random factor in [0.5, 1) per episode spreads a
        # fleet's reconnects after a broker restart.
        # Connections the broker drops right after a publish back off too (connection_health).
        r = self._cfg.reconnect
        jitter = 0.5 + 0.5 * self._rng.random()
        first = min(r.initial_s * self._health.backoff_factor(), r.max_s)
        client.reconnect_delay_set(min_delay=first * jitter, max_delay=r.max_s * jitter)

    # --- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self._health.refused(reason_code)
            return
        self._network_thread = threading.current_thread()  # callbacks run on paho's loop
        # Logs "connected" (once) and sets edged_mqtt_connected.
        self._health.connected(getattr(properties, "MaximumQoS", None))
        for topic_filter, qos, _ in self._subscriptions:
            client.subscribe(topic_filter, qos=qos)
        with self._lock:
            self._generation += 1
            self._lock.notify_all()
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        was = self._connected.is_set()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)
        self._health.disconnected(reason_code, flags.is_disconnect_packet_from_server,
                                  expected=reason_code == 0)
        if reason_code != 0 and not self._stop.is_set():
            self._next_server(client)
        if was and reason_code != 0:
            self._set_backoff(client)

    def _on_connect_fail(self, client, userdata) -> None:  # noqa: ANN001
        # paho calls this inside its `except OSError`, so the cause is still at hand.
        exc = sys.exc_info()[1]
        why = f": {exc}" if exc is not None else ""
        if isinstance(exc, ssl.SSLError):
            why += " (TLS: check mqtt.tls)"
        self._health.unreachable(why)
        self._next_server(client)

    # --- several servers (mqtt.servers) ------------------------------------------------------

    def _next_server(self, client: mqtt.Client) -> None:
        """Before paho's next attempt (paho's thread): move on to the next server, with the
        usual backoff; the log names each as "host:port (server i of n)"."""
        if len(self._servers) > 1:
            self._servers.advance()
            self._servers.apply(client)
            self._health.at(self._servers.describe())
            self._metrics.mqtt_server_switches.inc()

    @property
    def server(self) -> str:
        """The broker connected to, or tried next: 'host:port'."""
        return str(self._servers.current)

    @property
    def server_description(self) -> str:
        """'host:port', with '(server i of n)' when mqtt.servers lists several."""
        return self._servers.describe()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        self._health.acked(mid)
        with self._lock:
            entry = self._pending.pop(mid, None)
            if entry is None:
                self._early[mid] = reason_code
                return
            self._acked(entry, reason_code)
            self._lock.notify_all()

    def _acked(self, entry: tuple[int | None, str], reason_code: object) -> None:
        """Bookkeeping for one acknowledgement; called with the lock held."""
        row_id, topic_class = entry
        if row_id is not None:
            self._acked_rows.append(row_id)
            self._rows_in_flight -= 1
        if getattr(reason_code, "is_failure", False):
            # The broker refused it for good (e.g. not authorized): retrying cannot help.
            self._metrics.outbox_dropped.labels("rejected").inc()
            if topic_class == "result":
                self._metrics.results_lost.labels("rejected").inc()
            log.warning("mqtt: broker rejected a %s message: %s", topic_class, reason_code)
        else:
            self._metrics.published.labels(topic_class).inc()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        for topic_filter, _, handler in self._subscriptions:
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                try:
                    handler(msg)
                except Exception:  # noqa: BLE001 - a bad message must not stop the client
                    log.exception("mqtt: handler for %s failed", msg.topic)

    # --- publishing --------------------------------------------------------------------------

    def _status(self, state: str) -> Message:
        return status_message(self._topics, state, time.time(), self._cfg.status.qos,
                              self._cfg.status.retain, self._cfg.status.interval_s,
                              self.server if state == "online" else None)

    def _properties(self, msg: Message, remaining_expiry_s: int | None = None):  # noqa: ANN202
        return properties(msg, remaining_expiry_s) if self.v5 else None

    def publish(self, msg: Message) -> None:
        """Results at QoS >= 1 go to the outbox (kept until acknowledged); the rest straight
        out, or dropped and counted when QoS 0 meets no connection."""
        if self._outbox is not None and msg.durable:
            self._outbox.put(msg)
            with self._lock:
                self._lock.notify_all()
            return
        self._send(msg, None, self._properties(msg))

    def publish_now(self, msg: Message) -> bool:
        """Send only while connected (retained state is re-sent on reconnect anyway)."""
        if not self._connected.is_set():
            return False
        self._send(msg, None, self._properties(msg))
        return True

    def _send(self, msg: Message, row_id: int | None, props: object) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("mqtt sink not started")
        topic_class = msg.kind
        # Never hold our lock while calling paho: its ack path takes its lock, then ours.
        info = client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain,
                              properties=props)
        if msg.qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            self._metrics.mqtt_failed.labels(topic_class).inc()
            return  # QoS 0 is fire-and-forget: paho drops it while disconnected
        self._health.sent(info.mid, msg.qos, topic_class)
        with self._lock:
            if row_id is not None:
                self._rows_in_flight += 1
            if info.mid in self._early:
                self._acked((row_id, topic_class), self._early.pop(info.mid))
                self._lock.notify_all()
            else:
                self._pending[info.mid] = (row_id, topic_class)

    # --- the sender thread -------------------------------------------------------------------

    def _run_sender(self) -> None:
        last_id = 0  # rows up to here were handed to paho (which resends them on reconnect)
        greeted = 0
        hold_until = 0.0
        while not self._stop.is_set():
            try:
                with self._lock:
                    acked, self._acked_rows = self._acked_rows, []
                    generation = self._generation
                if acked and self._outbox is not None:
                    self._outbox.delete(acked)
                if generation != greeted and self._connected.is_set():
                    greeted = generation
                    # paho resends what was in flight right after the CONNACK; new rows
                    # wait for those acks so that nothing overtakes them.
                    hold_until = time.monotonic() + 10.0
                    self._greet()
                elif (generation == greeted and self._connected.is_set()
                      and self._heartbeat.due()):
                    self._beat()
                if self._outbox is not None and self._connected.is_set():
                    with self._lock:
                        holding = self._rows_in_flight > 0 and time.monotonic() < hold_until
                    if not holding:
                        hold_until = 0.0
                        last_id = self._feed(last_id)
                with self._lock:
                    if not self._acked_rows and self._generation == greeted:
                        self._lock.wait(0.05 if hold_until else 0.2)
            except Exception:  # noqa: BLE001 - e.g. a disk error: say so, keep trying
                log.exception("mqtt: sender error; retrying")
                self._stop.wait(1.0)

    def _greet(self) -> None:
        """After each connect: retained states and discovery (the connected event), then
        `online`, so that a consumer seeing `online` has the current picture."""
        self.greetings += 1  # counted first: see Daemon.start
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:
                log.exception("mqtt: on-connect handler failed")
        self.publish_now(self._status("online"))
        self._heartbeat.reset()

    def _beat(self) -> None:
        """The heartbeat: the heartbeat event (states re-sent), then `online` with a fresh
        ts, retained, so a consumer can tell a live node from a stale retained `online` left
        by a dead broker node (edged.mqtt.heartbeat)."""
        if self._on_beat is not None:
            try:
                self._on_beat()
            except Exception:
                log.exception("mqtt: heartbeat handler failed")
        self.publish_now(self._status("online"))
        self._heartbeat.reset()

    def _feed(self, last_id: int) -> int:
        assert self._outbox is not None
        with self._lock:
            room = self._cfg.max_inflight - self._rows_in_flight
        if room <= 0:
            return last_id
        expiry = self._cfg.message_expiry_s
        now = time.time()
        for row in self._outbox.after(last_id, room):
            last_id = row.id
            remaining = self._remaining(row, expiry, now)
            if remaining is not None and remaining <= 0:
                self._outbox.delete([row.id])
                self._metrics.outbox_dropped.labels("expired").inc()
                self._metrics.results_lost.labels("expired").inc()
                continue
            self._send(row.message, row.id, self._properties(row.message, remaining))
        return last_id

    @staticmethod
    def _remaining(row: Row, expiry: int, now: float) -> int | None:
        """Seconds of message expiry left (expiry counts from when the result was made)."""
        if not expiry:
            return None
        return int(expiry - (now - row.created))

    # --- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def connection_problem(self) -> str | None:
        """Why the broker connection does not deliver although the broker answers (it refuses,
        or drops the connection after publishes), for /readyz; None otherwise."""
        return self._health.problem

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            pending = len(self._pending)
        return pending + (self._outbox.waiting if self._outbox is not None else 0)

    def outbox_stats(self) -> tuple[int, int, float]:
        """(messages, payload bytes, age in seconds of the oldest) not yet acknowledged."""
        if self._outbox is None:
            with self._lock:
                return len(self._pending), 0, 0.0
        oldest = self._outbox.oldest_created()
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return self._outbox.count, self._outbox.size_bytes, age

    def flush(self, timeout: float, outbox: bool = True) -> bool:
        """Wait until the broker acknowledged everything (outbox empty, nothing in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = not self._pending and not self._acked_rows
            if idle and (not outbox or self._outbox is None or self._outbox.waiting == 0):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not self._connected.is_set():
                return False
            with self._lock:
                self._lock.wait(min(left, 0.1))

    def stop(self, timeout: float = 3.0) -> None:
        """Deliver what the broker takes within `timeout`, publish `stopped`, disconnect.
        What was not acknowledged stays in the outbox for the next start."""
        client = self._client
        if client is None:
            return
        if self._connected.is_set():
            if not self.flush(timeout):
                log.warning("mqtt: %d messages not acknowledged at exit%s", self.unacknowledged,
                            self._outbox.exit_note() if self._outbox is not None else "")
            if self.publish_now(self._status("stopped")):
                self.flush(2.0, outbox=False)
        elif self.unacknowledged:
            log.warning("mqtt: broker unreachable at exit; %d messages not delivered%s",
                        self.unacknowledged,
                        self._outbox.exit_note() if self._outbox is not None else "")
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._sender is not None:
            self._sender.join(5)
            self._sender = None
        with self._lock:
            acked, self._acked_rows = self._acked_rows, []
        if acked and self._outbox is not None:
            self._outbox.delete(acked)
        if self._outbox is None:  # no outbox: results the broker did not take are gone
            with self._lock:
                gone = sum(1 for _, cls in self._pending.values() if cls == "result")
            if gone:
                self._metrics.results_lost.labels("shutdown").inc(gone)
        self._client = None
        client.disconnect()
        client.loop_stop()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)
        if self._outbox is not None:
            self._outbox.close()
