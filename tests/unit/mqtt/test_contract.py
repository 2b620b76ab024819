"""The MQTT contract: every payload edged publishes is built in edged/mqtt/contract.py, and
each builder's output fits its published schema in docs/schemas."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from edged.frame import Frame
from edged.mqtt import contract
from edged.mqtt.contract import Message, Topics
from tests.helpers.schemas import validate

T = Topics("edged", "line-1")
LABELS = ["ok", "scratched", "dented"]
TOP = [(1, 0.875), (0, 0.1), (2, 0.025)]


def _frame(name: str | None = None) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), 7, 1700000000.25, 100.0, name=name)


def test_topics():
    assert T.status == "edged/line-1/status"
    assert T.result("cam") == "edged/line-1/cam/result"
    assert T.state("cam") == "edged/line-1/cam/state"
    assert T.snapshot("cam") == "edged/line-1/cam/snapshot"
    assert T.command("cam", "classify") == "edged/line-1/cam/cmd/classify"
    assert T.reply("cam", "state") == "edged/line-1/cam/reply/state"


def test_result_payload_and_message():
    payload = contract.result_payload("line-1", "cam", 3, _frame("a.jpg"), "default", LABELS,
                                      TOP, 0.0004, 100.012)
    validate("result", payload)
    assert payload["label"] == "scratched" and payload["index"] == 1
    assert payload["latency_ms"] == 12.0 and payload["file"] == "a.jpg"
    assert [t["label"] for t in payload["top_k"]] == ["scratched", "ok", "dented"]
    msg = contract.result_message(T, payload, 1, False, "abc", 60)
    assert msg.topic == "edged/line-1/cam/result" and msg.durable
    assert msg.camera == "cam" and msg.seq == 3 and json.loads(msg.payload) == payload
    assert msg.user_properties == (("model_sha256", "abc"),) and msg.expiry_s == 60
    assert not contract.result_message(T, payload, 0, False, None, 0).durable  # QoS 0
    bad = dict(payload, score="high")
    with pytest.raises(jsonschema.ValidationError):
        validate("result", bad)


def test_state_status_and_replies_fit_their_schemas():
    state = contract.state_payload("line-1", "cam", "ok", 0.9, 1.5, 4, "majority", 2.0)
    validate("state", state)
    msg = contract.state_message(T, state, 1, True)
    assert msg.topic == T.state("cam") and msg.retain and msg.kind == "state"
    for s in ("online", "offline", "stopped"):
        validate("status", json.loads(contract.status_payload(s, 10.0)))
    result = contract.command_result(_frame(), "default", LABELS, TOP, 0.001, 100.5)
    reply = {"node_id": "line-1", "camera": "cam", "command": "classify", "ok": True,
             "result": result, "ts": 1.0}
    validate("command-reply", reply)
    plain = contract.reply_message(T, "cam", "classify", reply, None, b"x")
    assert plain.topic == T.reply("cam", "classify") and plain.correlation is None
    v5 = contract.reply_message(T, "cam", "classify", reply, "app/replies", b"x")
    assert v5.topic == "app/replies" and v5.correlation == b"x"


def test_discovery_and_snapshot_messages():
    msg = contract.discovery_message(T, "homeassistant", "cam")
    assert msg.topic == "homeassistant/sensor/line-1/cam/config" and msg.retain
    payload = json.loads(msg.payload)
    validate("ha-discovery", payload)
    assert payload["state_topic"] == T.state("cam")
    assert payload["availability_topic"] == T.status
    snap = contract.snapshot_message(T, "cam", b"\xff\xd8jpeg", 1, "dented",
                                     {"label": "dented", "score": 0.8, "seq": 9, "ts": 2.0}, 7)
    assert snap.retain and snap.content_type == contract.JPEG
    assert dict(snap.user_properties)["frame"] == "7"


def test_classify_row_has_the_result_fields():
    row = contract.classify_row("a.jpg", LABELS, TOP, 0.002)
    assert {k: row[k] for k in ("label", "index", "score")} == {
        "label": "scratched", "index": 1, "score": 0.875}
    assert row["top_k"] == contract.classification(LABELS, TOP)["top_k"]


def test_v5_properties_come_from_the_message():
    msg = Message("t", b"{}", 1, False, "result", camera="c", seq=1,
                  user_properties=(("model_sha256", "abc"),), expiry_s=30, correlation=b"id")
    props = contract.properties(msg)
    assert props.ContentType == contract.JSON
    assert props.UserProperty == [("model_sha256", "abc")]
    assert props.MessageExpiryInterval == 30 and props.CorrelationData == b"id"
    assert contract.properties(msg, remaining_expiry_s=5).MessageExpiryInterval == 5
