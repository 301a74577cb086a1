"""The public API: `APNsClient.send(token, payload, ...) -> PushResult` for one signing key.

Owns the provider token shared by the production and sandbox pools (the HTTP/2 core's
`HostPool`, one per environment, with Apple's rules as their judge), turning send arguments
into a wire-ready request (payload limit checked before anything is sent), and the pools'
lifetime. Must not know about databases, HTTP routes or which tokens to delete.
"""

import asyncio
from collections.abc import Callable
from typing import Self
from urllib.parse import urlsplit

from owlmetry.h2client import HostPool, PoolSettings, PoolStats, Request, ssl_context

from . import wire
from .answers import AppleJudge, RetryPolicy
from .push_result import CLIENT_CLOSED, PushResult, ResultKind, local_error, payload_too_large
from .token import ProviderToken

PRODUCTION_URL = "https://api.push.apple.com:443"
SANDBOX_URL = "https://api.sandbox.push.apple.com:443"


class APNsClient:
    """Pushes for one team/key and one app (`topic`: its bundle id), to production and sandbox.

    Without an explicit `topic`, a push goes to Apple's topic for its push type (`.voip`,
    `.push-type.liveactivity`, ... appended to the bundle id).

    Every `send` returns a `PushResult`, never raises for a push-specific problem (bad token,
    too-large payload, unknown environment, APNs errors, timeouts, lost connections).
    `close()` (or leaving `async with`) ends in-flight pushes with ClientClosed and returns once
    every socket and task is gone.
    """

    def __init__(self, key_id: str, team_id: str, key_pem: str | bytes, topic: str,
                 production_url: str = PRODUCTION_URL, sandbox_url: str = SANDBOX_URL,
                 ca_file: str | None = None, connections: int = 2,
                 max_streams_per_connection: int = 1000, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, idle_ping_s: float = 60.0,
                 ping_timeout_s: float = 5.0, connect_timeout_s: float = 10.0,
                 token: ProviderToken | None = None):
        if connections < 1 or max_streams_per_connection < 1:
            raise ValueError("connections and max_streams_per_connection must be at least 1")
        self.topic = topic
        self.token = token or ProviderToken(key_id, team_id, key_pem)
        self._urls = {"production": _host_port(production_url),
                      "sandbox": _host_port(sandbox_url)}
        self._ssl = ssl_context(ca_file)
        self._settings = PoolSettings(connections, max_streams_per_connection, timeout_s,
                                      connect_timeout_s, idle_ping_s, ping_timeout_s)
        self._judge = AppleJudge(retry or RetryPolicy())
        self._pools: dict[str, HostPool] = {}
        # A push kind's (topic, push_type, priority, expiration, collapse_id) as given -> its
        # pre-encoded fields and payload limit: a fan-out's pushes are all of one kind.
        self._kinds: dict[tuple, tuple[bytes, int]] = {}
        self._closed = False

    async def send(self, token_hex: str, payload: bytes | dict, environment: str = "production",
                   push_type: str = "alert", priority: int = 10, expiration: int | None = None,
                   collapse_id: str | None = None, topic: str | None = None) -> PushResult:
        ready = self._prepare(token_hex, payload, environment, push_type, priority, expiration,
                              collapse_id, topic)
        if isinstance(ready, PushResult):
            return ready
        pool, request = ready
        return await pool.send(request)

    def send_soon(self, token_hex: str, payload: bytes | dict, environment: str,
                  on_result: Callable[[PushResult], None], push_type: str = "alert",
                  priority: int = 10, expiration: int | None = None,
                  collapse_id: str | None = None, topic: str | None = None,
                  live: Callable[[], bool] | None = None) -> None:
        """`send` without a coroutine, for fan-outs: `on_result(result)` is called once, from the
        event loop, never before this returns. A push that succeeds at once costs no task.
        `live`: asked before each attempt goes out (`h2client.Exchange`)."""
        ready = self._prepare(token_hex, payload, environment, push_type, priority, expiration,
                              collapse_id, topic)
        if isinstance(ready, PushResult):
            asyncio.get_running_loop().call_soon(on_result, ready)
            return
        pool, request = ready
        pool.send_soon(request, on_result, live)

    def _prepare(self, token_hex, payload, environment, push_type, priority, expiration,
                 collapse_id, topic) -> tuple[HostPool, Request] | PushResult:
        """The pool and wire-ready request for a push, or the result if it cannot be sent."""
        key = (topic, push_type, priority, expiration, collapse_id)
        kind = self._kinds.get(key)
        limit = wire.payload_limit(push_type) if kind is None else kind[1]
        if payload.__class__ is bytes:  # what a fan-out sends: no call to make it bytes
            body = payload
        else:
            try:
                body = wire.encode_payload(payload)
            except (TypeError, ValueError):
                return PushResult(ResultKind.ERROR, 0, "BadPayload", attempts=0)
        if len(body) > limit:
            return payload_too_large()
        if not wire.is_device_token(token_hex):
            return PushResult(ResultKind.BAD_DEVICE_TOKEN, 0, "BadDeviceToken", attempts=0)
        if self._closed:
            return local_error(CLIENT_CLOSED, 0)
        pool = self._pools.get(environment) or self._open_pool(environment)
        if pool is None:
            return PushResult(ResultKind.ERROR, 0, "UnknownEnvironment", attempts=0)
        if kind is None:
            if len(self._kinds) > 4096:  # expirations vary; keep the cache bounded
                self._kinds.clear()
            kind = self._kinds[key] = (
                wire.options_field(topic or wire.topic_for(self.topic, push_type), push_type,
                                   priority, expiration, collapse_id), limit)
        return pool, wire.request(token_hex, kind[0], body)

    def connections(self, environment: str = "production") -> int:
        """Sockets the pool of `environment` holds now."""
        pool = self._pools.get(environment)
        return pool.connections if pool else 0

    def pool_stats(self) -> dict[str, PoolStats]:
        """Per environment, opened yet or not, what its pool holds now."""
        return {environment: pool.stats() if (pool := self._pools.get(environment))
                else PoolStats(0, 0, 0) for environment in self._urls}

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _open_pool(self, environment: str) -> HostPool | None:
        if environment not in self._urls:
            return None
        host, port = self._urls[environment]
        pool = self._pools[environment] = HostPool(
            host, port, self._ssl, self.token, self._judge, self._settings, "apns",
            frozenset({b"apns-id"}))
        return pool


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"APNs URL must be https://host[:port], got {url!r}")
    return parts.hostname, parts.port or 443

