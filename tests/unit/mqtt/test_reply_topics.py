"""Which response topics a command may name, and deep JSON in a command (pure functions)."""

from __future__ import annotations

import pytest

from edged.config import CommandsConfig
from edged.mqtt.extensions.commands import MAX_PAYLOAD, CommandError, parse_request
from edged.mqtt.reply_topics import ReplyTopicPolicy
from edged.mqtt.contract import Topics

T = Topics("edged", "n1")


@pytest.mark.parametrize("topic", [
    "edged/n1/cam/result", "edged/n1/status", "edged/n1/cam/state", "edged/n1/cam/cmd/classify",
    "edged/other/cam/reply/classify", "edged/n1/cam/reply", "edged/n1/cam/reply/x/y", "edged",
    "$SYS/x", "$share/g/t", "a/#", "a/+/b", "#", "", "a\x00b", "homeassistant/sensor/n1/c/config",
    "x" * 70000,
])
def test_refused(topic):
    assert ReplyTopicPolicy().refusal(topic, T) is not None


@pytest.mark.parametrize("topic", ["clients/42/reply", "edged/n1/cam/reply/classify",
                                   "edgedx/n1/cam/result", "a"])
def test_allowed_by_default(topic):
    assert ReplyTopicPolicy().refusal(topic, T) is None


def test_reply_prefixes_restrict_but_never_widen():
    policy = ReplyTopicPolicy(("clients/", "edged/"))
    assert policy.refusal("clients/7", T) is None
    assert "reply_prefixes" in policy.refusal("other/7", T)
    assert policy.refusal("edged/n1/cam/reply/state", T) is None
    assert "own topics" in policy.refusal("edged/n1/cam/result", T)  # a prefix cannot allow it
    assert "wildcard" in policy.refusal("clients/#", T)


def test_prefix_with_slashes_and_own_tree():
    t = Topics("site/edged", "n1")
    assert ReplyTopicPolicy().refusal("site/edged/n1/c/result", t) is not None
    assert ReplyTopicPolicy().refusal("site/edged/n1/c/reply/classify", t) is None
    assert ReplyTopicPolicy().refusal("site/other", t) is None


@pytest.mark.parametrize("bad", ["", "$SYS/", "a/+", "a/#"])
def test_config_refuses_bad_prefixes(bad):
    with pytest.raises(ValueError, match="a prefix must be"):
        CommandsConfig(reply_prefixes=[bad])


@pytest.mark.parametrize("payload", [
    b"[" * MAX_PAYLOAD, b'{"a":' * (MAX_PAYLOAD // 5), b"[" * 5000 + b"]" * 5000,
    b'{"id": ' + b"9" * 5000 + b"}",
])
def test_deep_or_odd_json_is_a_command_error(payload):
    assert len(payload) <= MAX_PAYLOAD
    with pytest.raises(CommandError) as info:
        parse_request(payload)
    assert info.value.reason == "bad_json"
