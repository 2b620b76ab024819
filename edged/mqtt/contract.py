"""The MQTT contract, in one place: topics, every payload edged publishes, and the MQTT v5
properties that go with them. docs/schemas holds the JSON Schema of each payload; the tests
validate what these builders make against them.

Everything here is pure: builders take plain values and return a `Message` (or a dict for a
payload a command reply embeds), so that the publisher, commands, `edged classify`, state,
Home Assistant and snapshots can never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edged import __version__
from edged.frame import Frame, split_subject, subject

JSON = "application/json"
JPEG = "image/jpeg"
TopK = Sequence[tuple[int, float]]  # (class index, score), best first


@dataclass(frozen=True)
class Topics:
    """The topic layout: {prefix}/{node_id}/{camera}/... and, for a camera's named region,
    {prefix}/{node_id}/{camera}/{region}/... (result, state, snapshot)."""

    prefix: str
    node_id: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.node_id}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    def subject(self, camera: str, region: str | None = None) -> str:
        """The topic level(s) of a camera, or of one of its regions."""
        return f"{self.root}/{camera}" if region is None else f"{self.root}/{camera}/{region}"

    def result(self, camera: str, region: str | None = None) -> str:
        return f"{self.subject(camera, region)}/result"

    def state(self, camera: str, region: str | None = None) -> str:
        return f"{self.subject(camera, region)}/state"

    def snapshot(self, camera: str, region: str | None = None) -> str:
        return f"{self.subject(camera, region)}/snapshot"

    def capture(self, camera: str, region: str | None = None) -> str:
        return f"{self.subject(camera, region)}/capture"

    def command(self, camera: str, name: str) -> str:
        return f"{self.root}/{camera}/cmd/{name}"

    def reply(self, camera: str, name: str) -> str:
        return f"{self.root}/{camera}/reply/{name}"


@dataclass(frozen=True)
class Message:
    """One message, whole: what the sink sends and the durable outbox keeps."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str  # result, state, status, reply, discovery, snapshot: the metrics' topic class
    camera: str | None = None  # the subject: camera, or camera/region (the outbox's key)
    seq: int | None = None  # results: the outbox keeps these in seq order per subject
    user_properties: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON
    expiry_s: int | None = None  # MQTT v5 message expiry, counted from `created`
    correlation: bytes | None = None  # MQTT v5 correlation data of a command reply
    created: float | None = field(default=None, compare=False)  # epoch s, for the expiry

    @property
    def durable(self) -> bool:
        """Results at QoS >= 1 go through the outbox; everything else is sent or re-sent."""
        return self.kind == "result" and self.qos > 0 and self.camera is not None \
            and self.seq is not None


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def properties(msg: Message, remaining_expiry_s: int | None = None) -> Any:  # noqa: ANN401
    """MQTT v5 PUBLISH properties for `msg` (paho's Properties)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = msg.content_type
    if msg.user_properties:
        props.UserProperty = list(msg.user_properties)
    expiry = remaining_expiry_s if remaining_expiry_s is not None else msg.expiry_s
    if expiry:
        props.MessageExpiryInterval = int(expiry)
    if msg.correlation is not None:
        props.CorrelationData = msg.correlation
    return props


# --- classifications -----------------------------------------------------------------------

def classification(labels: Sequence[str], top: TopK) -> dict[str, Any]:
    """label, index, score and top_k of one classification (shared by every payload)."""
    index, score = top[0]
    return {"label": labels[index], "index": index, "score": round(score, 6),
            "top_k": [{"label": labels[i], "index": i, "score": round(s, 6)} for i, s in top]}


def result_payload(node_id: str, camera: str, seq: int, frame: Frame, model: str,
                   labels: Sequence[str], top: TopK, inference_s: float,
                   published_mono: float) -> dict[str, Any]:
    """docs/schemas/result.schema.json; a region's result (frame.region_name set) names it, and
    its seq counts that region's results."""
    msg: dict[str, Any] = {"node_id": node_id, "camera": camera}
    if frame.region_name is not None:
        msg["region"] = frame.region_name
    msg.update({"seq": seq, "frame": frame.index, "ts": round(frame.ts, 6), "model": model})
    msg.update(classification(labels, top))
    msg["inference_ms"] = round(inference_s * 1000, 3)
    msg["latency_ms"] = round((published_mono - frame.mono) * 1000, 3)
    if frame.name is not None:
        msg["file"] = frame.name
    if frame.pts is not None:  # live sources: stream time since the first frame (issue 13)
        msg["pts"] = round(frame.pts, 6)
    return msg


def result_message(topics: Topics, payload: dict[str, Any], qos: int, retain: bool,
                   model_sha256: str | None, expiry_s: int | None,
                   created: float | None = None) -> Message:
    props = (("model_sha256", model_sha256),) if model_sha256 else ()
    camera, region = payload["camera"], payload.get("region")
    return Message(topics.result(camera, region), encode(payload), qos, retain, "result",
                   camera=subject(camera, region), seq=payload["seq"], user_properties=props,
                   expiry_s=expiry_s or None, created=created)


def command_result(frame: Frame, model: str, labels: Sequence[str], top: TopK,
                   inference_s: float, now_mono: float) -> dict[str, Any]:
    """The `result` of a classify command reply (docs/schemas/command-reply.schema.json)."""
    out: dict[str, Any] = {"frame": frame.index, "ts": round(frame.ts, 6), "model": model}
    out.update(classification(labels, top))
    out["inference_ms"] = round(inference_s * 1000, 3)
    out["age_ms"] = round((now_mono - frame.mono) * 1000, 3)
    if frame.name is not None:
        out["file"] = frame.name
    return out


def classify_row(image: str, labels: Sequence[str], top: TopK, inference_s: float
                 ) -> dict[str, Any]:
    """One line of `edged classify --json`: the same fields as a result."""
    row: dict[str, Any] = {"image": image}
    row.update(classification(labels, top))
    row["inference_ms"] = round(inference_s * 1000, 3)
    return row


# --- state, status, replies ------------------------------------------------------------------

def state_payload(node_id: str, camera: str, state: str, score: float, since: float,
                  seq: int | None, method: str, ts: float,
                  region: str | None = None) -> dict[str, Any]:
    """docs/schemas/state.schema.json"""
    out: dict[str, Any] = {"node_id": node_id, "camera": camera}
    if region is not None:
        out["region"] = region
    out.update({"state": state, "score": score, "since": round(since, 6), "seq": seq,
                "method": method, "ts": round(ts, 6)})
    return out


def state_message(topics: Topics, payload: dict[str, Any], qos: int, retain: bool) -> Message:
    camera, region = payload["camera"], payload.get("region")
    return Message(topics.state(camera, region), encode(payload), qos, retain, "state",
                   camera=subject(camera, region))


def status_payload(state: str, ts: float, interval_s: float = 0.0,
                   server: str | None = None) -> bytes:
    """docs/schemas/status.schema.json: online, offline (the last will) or stopped; with the
    heartbeat on, `interval_s` (a status older than 3 x it means offline); on online, the
    `server` (host:port) edged is connected to."""
    body: dict[str, Any] = {"state": state, "ts": round(ts, 3)}
    if interval_s:
        body["interval_s"] = interval_s
    if server is not None:
        body["server"] = server
    return json.dumps(body).encode()


def status_message(topics: Topics, state: str, ts: float, qos: int, retain: bool,
                   interval_s: float = 0.0, server: str | None = None) -> Message:
    return Message(topics.status, status_payload(state, ts, interval_s, server), qos, retain,
                   "status")


def reply_message(topics: Topics, camera: str, command: str, reply: dict[str, Any],
                  response_topic: str | None, correlation: bytes | None) -> Message:
    """A command reply: to the v5 response topic with its correlation data when the request
    named one (the caller checks it is allowed), else to .../{camera}/reply/{command}."""
    topic = response_topic or topics.reply(camera, command)
    return Message(topic, encode(reply), 1, False, "reply", camera=camera,
                   correlation=correlation if response_topic else None)


# --- Home Assistant discovery ----------------------------------------------------------------

def object_id(camera: str, region: str | None = None) -> str:
    """Home Assistant's object id of a camera's or a region's sensor (one topic level): the
    camera, or camera__region."""
    return camera if region is None else f"{camera}__{region}"


def discovery_topic(prefix: str, node_id: str, camera: str, region: str | None = None) -> str:
    return f"{prefix}/sensor/{node_id}/{object_id(camera, region)}/config"


def discovery_payload(topics: Topics, camera: str, expire_after: int | None = None,
                      region: str | None = None) -> dict[str, Any]:
    """docs/schemas/ha-discovery.schema.json: the sensor's state and attributes come from the
    state topic, availability from the status topic (anything but `online` is unavailable).
    `expire_after` (with the heartbeat: 3 intervals) makes the sensor unavailable when state
    updates stop, even while a retained `online` outlived its broker node. A camera with
    regions has one sensor per region."""
    node = topics.node_id
    oid = object_id(camera, region)
    payload: dict[str, Any] = {
        "name": camera if region is None else f"{camera} {region}",
        "unique_id": f"edged_{node}_{oid}",
        "object_id": f"edged_{node}_{oid}",
        "state_topic": topics.state(camera, region),
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": topics.state(camera, region),
        "json_attributes_template":
            "{{ {'score': value_json.score, 'since': value_json.since} | tojson }}",
        "availability_topic": topics.status,
        "availability_template":
            "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:cctv",
        "device": {"identifiers": [f"edged_{node}"], "name": f"edged {node}",
                   "manufacturer": "edged", "model": "edge inference daemon",
                   "sw_version": __version__},
        "origin": {"name": "edged", "sw_version": __version__},
    }
    if expire_after is not None:
        payload["expire_after"] = expire_after
    return payload


def discovery_message(topics: Topics, discovery_prefix: str, camera: str,
                      expire_after: int | None = None, region: str | None = None) -> Message:
    return Message(discovery_topic(discovery_prefix, topics.node_id, camera, region),
                   json.dumps(discovery_payload(topics, camera, expire_after, region)).encode(),
                   1, True, "discovery", camera=subject(camera, region))


# --- a subject that is gone ------------------------------------------------------------------

def retired_messages(topics: Topics, camera: str, region: str | None,
                     discovery_prefix: str | None) -> list[Message]:
    """Empty retained messages that clear what a removed region (or camera) left on the
    broker: its state, its snapshot, and its Home Assistant sensor (which an empty
    discovery config deletes)."""
    key = subject(camera, region)
    out = [Message(topics.state(camera, region), b"", 1, True, "state", camera=key),
           Message(topics.snapshot(camera, region), b"", 1, True, "snapshot", camera=key)]
    if discovery_prefix is not None:
        out.append(Message(discovery_topic(discovery_prefix, topics.node_id, camera, region),
                           b"", 1, True, "discovery", camera=key))
    return out


# --- snapshots -------------------------------------------------------------------------------

def snapshot_message(topics: Topics, camera: str, jpeg: bytes, qos: int, state: str,
                     result: dict[str, Any], frame_index: int,
                     region: str | None = None) -> Message:
    """A retained JPEG; under v5 its user properties say what it shows."""
    props = (("state", state), ("label", str(result.get("label"))),
             ("score", str(result.get("score"))), ("seq", str(result.get("seq"))),
             ("frame", str(frame_index)), ("ts", str(result.get("ts"))))
    if region is not None:
        props += (("region", region),)
    return Message(topics.snapshot(camera, region), jpeg, qos, True, "snapshot",
                   camera=subject(camera, region), user_properties=props, content_type=JPEG)


# --- evidence captures -----------------------------------------------------------------------

def capture_payload(result: dict[str, Any], camera: str, rule: str, rules: Sequence[str],
                    state: str | None, image: str, full_image: str | None, width: int,
                    height: int, image_bytes: int, written: float,
                    region: str | None = None) -> dict[str, Any]:
    """docs/schemas/capture.schema.json: the JSON sidecar of a capture and its announcement.
    `image` and `full_image` are relative to the capture folder."""
    out: dict[str, Any] = {"node_id": result.get("node_id"), "camera": camera}
    if region is not None:
        out["region"] = region
    out.update({"seq": result.get("seq"),
                "frame": result.get("frame"), "ts": result.get("ts"), "label": result["label"],
                "score": result["score"], "rule": rule, "rules": list(rules), "state": state,
                "image": image, "full_image": full_image, "width": width, "height": height,
                "bytes": image_bytes, "written": round(written, 6), "result": result})
    return out


def capture_message(topics: Topics, camera: str, payload: bytes, qos: int) -> Message:
    """A capture written to disk, announced (not retained: the folder is the record).
    `camera` is the subject: a camera, or camera/region (on .../{camera}/{region}/capture)."""
    name, region = split_subject(camera)
    return Message(topics.capture(name, region), payload, qos, False, "capture", camera=camera)
