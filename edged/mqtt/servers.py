"""Several brokers (`mqtt.servers`): which one the client is on, and moving to the next.

paho knows one host and port. On each lost connection or failed attempt the sink calls
`advance()` and then `apply()` on paho's thread, before paho's own reconnect (which waits the
usual backoff), so the next attempt goes to the next server in the list, round robin. TLS
host-name checking follows, since paho passes its current host as `server_hostname`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ServerList:
    """The configured brokers in order; the first is tried first. Thread-safe."""

    def __init__(self, servers: Sequence[tuple[str, int]]) -> None:
        if not servers:
            raise ValueError("at least one server is needed")
        self._servers = [Server(h, p) for h, p in servers]
        self._index = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._servers)

    @property
    def servers(self) -> list[Server]:
        return list(self._servers)

    @property
    def current(self) -> Server:
        with self._lock:
            return self._servers[self._index]

    @property
    def index(self) -> int:
        with self._lock:
            return self._index

    def advance(self) -> Server:
        """The next server (wrapping round); the same one when only one is configured."""
        with self._lock:
            self._index = (self._index + 1) % len(self._servers)
            return self._servers[self._index]

    def describe(self, server: Server | None = None) -> str:
        """'host:port', with '(server i of n)' when there are several."""
        server = server or self.current
        if len(self._servers) == 1:
            return str(server)
        return f"{server} (server {self._servers.index(server) + 1} of {len(self._servers)})"

    def apply(self, client: mqtt.Client) -> None:
        """Point paho's next (re)connect at the current server.

        paho's public host/port setters refuse while a lost connection is being torn down
        (exactly when we switch), so the attributes behind them are set directly."""
        server = self.current
        client._host = server.host  # noqa: SLF001 - see above
        client._port = server.port  # noqa: SLF001
