"""A cap on the client connections one server holds open, and what happens to the next one.

Every connection costs a file descriptor (and often an upstream connection, a second one); a process
out of descriptors can no longer accept, connect upstream or open its store. So the server admits at
most `limit` connections. A new client past the limit takes the slot of the connection that has been
idle longest (a keep-alive connection waiting for nothing, or one that never sent a request), which
HTTP lets a server close at any time; when every connection is busy, the client gets a plain 503
with Retry-After and the connection ends.
"""

from __future__ import annotations

from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


class ConnectionLimit:
    """The open connections, and the idle ones in the order they became idle (oldest first), so
    the one to evict is found at once and the idle sweep stops at the first that may stay."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_connections must be at least 1")
        self.limit = limit
        self.open: set[Closable] = set()
        self.idle: dict[Closable, float] = {}  # connection -> when it became idle; insertion ordered
        self.refused: dict[Closable, float] = {}  # refused connections left to read the 503 -> when

    def __len__(self) -> int:
        return len(self.open)

    def admit(self, connection: Closable) -> bool:
        """Whether `connection` may be served, after closing the longest idle one if the limit is
        reached; False when every connection is busy."""
        if len(self.open) >= self.limit:
            victim = next(iter(self.idle), None)
            if victim is None:
                return False
            self.closed(victim)
            victim.close()
        self.open.add(connection)
        return True

    def became_idle(self, connection: Closable, now: float) -> None:
        self.idle.pop(connection, None)  # to the end: the order is the order of becoming idle
        self.idle[connection] = now

    def became_busy(self, connection: Closable) -> None:
        self.idle.pop(connection, None)

    def closed(self, connection: Closable) -> None:
        self.open.discard(connection)
        self.idle.pop(connection, None)
        self.refused.pop(connection, None)

    def idle_since_before(self, deadline: float) -> list[Closable]:
        """The connections idle since before `deadline`."""
        expired = []
        for connection, since in self.idle.items():
            if since >= deadline:
                break
            expired.append(connection)
        return expired
