"""MQTT commands: {prefix}/{node_id}/{camera}/cmd/{classify|state}, each answered once.

paho's thread only checks the size and queues the request; a named thread parses it, runs it
and replies (MQTT v5: to the response topic with the correlation data; else, or without a
response topic, to {prefix}/{node_id}/{camera}/reply/{name}; a response topic that
reply_topics.py refuses gets an error reply there instead). Nothing a request holds can stop
the daemon: every failure is an error reply and a counted reason.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edged.frame import Frame
from edged.inference.backends import Backend
from edged.inference.worker import classify
from edged.model.loaded import LoadedModel
from edged.mqtt.contract import Message, Topics, command_result, reply_message
from edged.mqtt.extensions.state import StateTracker
from edged.mqtt.reply_topics import ReplyTopicPolicy
from edged.service.metrics import Metrics
from edged.service.ratelimit import EpisodeLog

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024
COMMANDS = ("classify", "state")
FIELDS = {"id"}  # the only request field: echoed in the reply (handy under MQTT 3.1.1)
_QUEUE_SIZE = 4096
ERROR_REASONS = ("too_large", "bad_json", "unknown_field", "bad_field", "unknown_camera",
                 "unknown_command", "no_frame", "failed", "busy", "response_topic")


class Cameras(Protocol):  # the camera set
    def last_frame(self, camera: str) -> Frame | None: ...
    def model_of(self, camera: str) -> LoadedModel | None: ...
    def __contains__(self, camera: object) -> bool: ...


class Link(Protocol):
    topics: Topics
    v5: bool

    def publish_now(self, msg: Message) -> bool: ...
    def subscribe(self, topic_filter: str, handler: Any, qos: int = 1) -> None: ...
    def unsubscribe(self, handler: Any) -> None: ...


class CommandError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Request:
    camera: str
    name: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None
    too_large: bool = False
    refused: bool = False  # its response topic was refused


def parse_request(payload: bytes) -> dict[str, Any]:
    """An empty payload or a JSON object with only known fields; CommandError otherwise."""
    if not payload.strip():
        return {}
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError("bad_json", f"payload is not valid JSON: {exc}") from None
    except RecursionError:  # json's C scanner recurses per level: 64 KiB of '[' is deep
        raise CommandError("bad_json", "payload is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise CommandError("bad_json", "payload must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise CommandError("unknown_field", f"unknown field(s): {', '.join(unknown)}")
    if "id" in data and not isinstance(data["id"], (str, int)):
        raise CommandError("bad_field", "id must be a string or an integer")
    return data


class CommandHandler:
    def __init__(self, link: Link, cameras: Cameras, state: StateTracker | None,
                 metrics: Metrics, reply_policy: ReplyTopicPolicy | None = None) -> None:
        self._link = link
        self._reply_policy = reply_policy or ReplyTopicPolicy()
        self._topic_episodes = EpisodeLog(log)
        self._cameras = cameras  # the camera set: frames and models as they are now
        self._state = state
        self._metrics = metrics
        self._queue: queue.Queue[Request | None] = queue.Queue(_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._backends: dict[tuple[str, str], Backend] = {}  # (model, sha256) -> its own
        self._episodes = EpisodeLog(log)

    @property
    def topic_filter(self) -> str:
        return self._link.topics.command("+", "+")

    def start(self) -> None:
        for reason in ERROR_REASONS:
            self._metrics.command_errors.labels(reason)
        self._metrics.declare_commands(COMMANDS)
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()
        self._link.subscribe(self.topic_filter, self._on_message)

    def stop(self, timeout: float = 3.0) -> None:
        self._link.unsubscribe(self._on_message)
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()

    # paho's thread: no parsing, no waiting.
    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        props = getattr(msg, "properties", None)
        request = Request(camera=parts[-3], name=parts[-1], payload=b"",
                          response_topic=getattr(props, "ResponseTopic", None),
                          correlation=getattr(props, "CorrelationData", None),
                          too_large=len(msg.payload) > MAX_PAYLOAD)
        if not request.too_large:
            request.payload = bytes(msg.payload)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._count_error(request.name, "busy")
            self._episodes.failure("commands: too many requests queued; dropping some")

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            try:
                self._handle(request)
            except Exception as exc:  # noqa: BLE001 - never let one request end the thread
                log.error("commands: request on %s/%s failed: %s: %s", request.camera,
                          request.name, type(exc).__name__, exc)
                log.debug("commands: the failure in full", exc_info=True)

    def _handle(self, req: Request) -> None:
        reply: dict[str, Any] = {"node_id": self._link.topics.node_id, "camera": req.camera,
                                 "command": req.name}
        try:
            refused = self._refused_response_topic(req)
            if req.too_large:
                raise CommandError("too_large", f"payload larger than {MAX_PAYLOAD} bytes")
            data = parse_request(req.payload)
            if "id" in data:
                reply["id"] = data["id"]
            if refused:  # nothing runs for a request whose answer may not go where it asks
                raise CommandError("response_topic", f"response topic refused: {refused}")
            if req.name not in COMMANDS:
                raise CommandError("unknown_command",
                                   f"unknown command {req.name!r}; known: {', '.join(COMMANDS)}")
            if req.camera not in self._cameras:
                raise CommandError("unknown_camera", f"no camera named {req.camera!r}")
            if req.name == "classify":
                reply["result"] = self._classify(req.camera)
            else:
                reply["state"] = self._current_state(req.camera)
            reply["ok"] = True
            self._metrics.commands.labels(req.name, "ok").inc()
        except CommandError as exc:
            reply["ok"] = False
            reply["error"] = str(exc)
            self._count_error(req.name, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a bug must still get an answer
            reply["ok"] = False
            reply["error"] = f"failed: {type(exc).__name__}"
            self._count_error(req.name, "failed")
            log.error("commands: %s/%s failed: %s: %s", req.camera, req.name,
                      type(exc).__name__, exc)
        reply["ts"] = round(time.time(), 6)
        self._reply(req, reply)

    def _count_error(self, name: str, reason: str) -> None:
        self._metrics.command_errors.labels(reason).inc()
        self._metrics.commands.labels(name if name in COMMANDS else "unknown", "error").inc()

    def _classify(self, camera: str) -> dict[str, Any]:
        frame = self._cameras.last_frame(camera)
        model = self._cameras.model_of(camera)
        if frame is None or model is None:
            raise CommandError("no_frame", "the camera has not delivered a frame yet")
        key = (model.name, model.sha256)  # a reload that swaps the file gets a new backend
        backend = self._backends.get(key)
        try:
            if backend is None:
                backend = model.new_backend()
                backend.start()
                self._backends[key] = backend
            top, elapsed = classify(backend, model, frame.region())
        except Exception as exc:  # noqa: BLE001 - the reply says why
            raise CommandError("failed", f"classification failed: {exc}") from None
        return command_result(frame, model.name, model.labels, top, elapsed, time.monotonic())

    def _current_state(self, camera: str) -> dict[str, Any]:
        if self._state is None:
            raise CommandError("failed", "state is disabled (mqtt.state.enabled: false)")
        self._state.publish(camera)  # and re-publish it, retained
        payload = self._state.payload(camera)
        if payload is None:
            raise CommandError("failed", f"camera {camera!r} has no state")
        return payload

    def _refused_response_topic(self, req: Request) -> str | None:
        """Why the request's response topic is refused (then the reply goes to .../reply/...)."""
        if not (self._link.v5 and req.response_topic):
            return None
        why = self._reply_policy.refusal(req.response_topic, self._link.topics)
        if why is None:
            self._topic_episodes.recovered("commands: response topics accepted again")
            return None
        req.response_topic = None  # never used: the error goes to the documented reply topic
        req.refused = True
        self._topic_episodes.failure("commands: refused a response topic on %s/%s: %s",
                                     req.camera, req.name, why)
        return why

    def _reply(self, req: Request, reply: dict[str, Any]) -> None:
        # MQTT v5: to the response topic with the correlation data; else the reply topic.
        response = req.response_topic if self._link.v5 else None
        msg = reply_message(self._link.topics, req.camera, req.name, reply, response,
                            req.correlation)
        if req.refused and req.correlation is not None:
            msg = replace(msg, correlation=req.correlation)  # the asker can match the refusal
        try:
            self._link.publish_now(msg)
        except ValueError as exc:  # paho's own check of a topic (the policy should catch all)
            log.error("commands: cannot reply on %r: %s", (response or "")[:200], exc)
