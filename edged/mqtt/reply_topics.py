"""Which MQTT v5 response topics a command may name (README: Commands).

A response topic comes from whoever sent the command, so it is checked like any other input:
edged never publishes a reply on a `$` topic (the broker's), on a wildcard, under its own
topic tree other than the documented reply topics `{prefix}/{node_id}/{camera}/reply/{name}`
(a reply must never pass for a result, a state or the status), under Home Assistant's
discovery prefix, nor, when `mqtt.commands.reply_prefixes` is set, outside those prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edged.mqtt.contract import Topics

# MQTT's limit for a topic (a UTF-8 string with a 2-byte length).
_MAX_TOPIC_BYTES = 65535


@dataclass(frozen=True)
class ReplyTopicPolicy:
    reply_prefixes: tuple[str, ...] | None = None  # None: any topic outside edged's trees
    discovery_prefix: str | None = "homeassistant"

    @classmethod
    def from_config(cls, commands_cfg, discovery_prefix: str | None  # noqa: ANN001
                    ) -> ReplyTopicPolicy:
        prefixes: Sequence[str] | None = getattr(commands_cfg, "reply_prefixes", None)
        return cls(tuple(prefixes) if prefixes is not None else None, discovery_prefix)

    def refusal(self, topic: str, topics: Topics) -> str | None:
        """Why edged will not reply on `topic`, or None if it may."""
        if not topic:
            return "it is empty"
        if len(topic.encode("utf-8", "surrogatepass")) > _MAX_TOPIC_BYTES:
            return "it is longer than MQTT allows"
        if "\x00" in topic or any(0xD800 <= ord(c) <= 0xDFFF for c in topic):
            return "it holds a character MQTT does not allow"
        if "+" in topic or "#" in topic:
            return "it holds a wildcard ('+' or '#')"
        if topic.startswith("$"):
            return "'$' topics belong to the broker"
        if _under(topic, topics.prefix):
            if self.is_reply_topic(topic, topics):
                return None  # documented, and what a reply without a response topic uses
            return (f"it is under edged's own topics ({topics.prefix}/...); only "
                    f"{topics.prefix}/{topics.node_id}/<camera>/reply/<name> is allowed there")
        if self.discovery_prefix and _under(topic, self.discovery_prefix):
            return f"it is under Home Assistant's discovery prefix ({self.discovery_prefix}/...)"
        if self.reply_prefixes is not None and not any(
                topic.startswith(p) for p in self.reply_prefixes):
            return "it is not under mqtt.commands.reply_prefixes"
        return None

    @staticmethod
    def is_reply_topic(topic: str, topics: Topics) -> bool:
        rest = topic[len(topics.prefix) + 1:].split("/")
        return (len(rest) == 4 and rest[0] == topics.node_id and rest[2] == "reply"
                and all(rest))


def _under(topic: str, prefix: str) -> bool:
    return topic == prefix or topic.startswith(prefix + "/")
