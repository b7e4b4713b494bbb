"""Configuration reload (SIGHUP): what a new file may change in a running gateway, and what needs a
restart.

Changed at once, for new requests: `endpoints` (destinations, fallbacks, rate limits, payload
logging, policies), `policies` (content policies, rebuilt with the router), `demo_endpoint`,
`agent` (MCP connections, Python functions, limits of the agent loop),
`server.cors_origins`, `server.cors_max_age`, `server.max_request_bytes` and `logging.level`.
Everything else is bound to something built once at start (the listening socket, the TLS context,
the store's engine, the Redis connection, the record writer, the background jobs, the server's
timeouts): a new value there is logged as a warning naming the keys, and the running value stays
until the next restart. The rule is written as the list of reloadable keys, not of the others, so
a key added later is restart-only until someone makes it reloadable on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from aigw.config import Settings


@dataclass(frozen=True)
class ReloadSource:
    """Where a running gateway re-reads its configuration. `load` raises ConfigError on a bad
    file; `workers` is the number of processes serving (in-process rate limits need one);
    `log_level` is false when a command-line flag fixed the level (the file's level then does not
    apply, at start or on reload)."""

    load: Callable[[], Settings]
    workers: int = 1
    log_level: bool = True


def effective(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """The settings to run after a reload from `old` to `new`: the reloadable keys from `new`, the
    rest from `old`; and the restart-only keys whose new value is therefore not applied."""
    server = msgspec.structs.replace(
        old.server, cors_origins=new.server.cors_origins, cors_max_age=new.server.cors_max_age,
        max_request_bytes=new.server.max_request_bytes,
    )  # fmt: skip
    result = msgspec.structs.replace(
        old, endpoints=new.endpoints, policies=new.policies, demo_endpoint=new.demo_endpoint, agent=new.agent, server=server,
        logging=msgspec.structs.replace(old.logging, level=new.logging.level),
    )  # fmt: skip
    return result, _differences(msgspec.to_builtins(result), msgspec.to_builtins(new), "")


def _differences(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)]
    return [] if a == b else [path]


def unshared_limits(settings: Settings, workers: int) -> str | None:
    """Why `settings` cannot be served by `workers` processes, or None. Rate-limit counters are kept
    in process unless `redis_url` is set; with N workers each would admit the full limit, N times
    the configured rate in all."""
    if workers <= 1 or settings.redis_url:
        return None
    limited = [e.name for e in settings.endpoints if e.rate_limits]
    if not limited:
        return None
    return (
        f"rate limits are configured (endpoints: {', '.join(limited)}) and {workers} worker processes would each "
        f"count them on their own, letting up to {workers} times each limit through: set redis_url "
        "(shared counters) or serve with one worker"
    )


def one_line(error: Exception) -> str:
    """A configuration error on one log line (YAML parser messages span several)."""
    return " ".join(str(error).split())
