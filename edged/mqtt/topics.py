"""The MQTT topic layout: {prefix}/{node_id}/... in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str
    node_id: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.node_id}/status"

    def result(self, camera: str) -> str:
        return f"{self.prefix}/{self.node_id}/{camera}/result"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{self.node_id}/{camera}/state"

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{self.node_id}/{camera}/snapshot"

    def command(self, camera: str, name: str) -> str:
        return f"{self.prefix}/{self.node_id}/{camera}/cmd/{name}"

    def reply(self, camera: str, name: str) -> str:
        return f"{self.prefix}/{self.node_id}/{camera}/reply/{name}"
