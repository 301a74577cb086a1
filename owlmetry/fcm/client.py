"""The public API: `FCMClient.send(body) -> FcmAnswer` for one service account (one Firebase
project), over the HTTP/2 client core (`owlmetry.h2client`), as `owlmetry.apns.client` is for APNs.

Owns the pool to FCM's host (a few connections, many streams each), the access tokens as the
pool's authorization hook (`BearerTokens`: a 401 renews the token once per generation, then the
send goes out again), FCM's rules as the pool's judge (`FcmJudge`, from `answers.classify`), and
holding sends until the first access token exists (one token request however many wait).
Must not build message bodies (`message.py`), know about databases, or decide which devices to
delete (the caller acts on `Decision.REMOVE`).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

from owlmetry.backoff import backoff
from owlmetry.h2client import (
    RENEW,
    Exchange,
    Failure,
    HostPool,
    PoolSettings,
    PoolStats,
    Request,
    Retry,
    ssl_context,
)
from owlmetry.h2client.hpack_encoder import POST, literal, path_field

from .answers import Decision, FcmAnswer, classify, delivered
from .oauth import AccessTokens, TokenError
from .service_account import ServiceAccount

FCM_URL = "https://fcm.googleapis.com"

# Reasons produced by this client, not by FCM (status 0: no HTTP answer was received).
TIMEOUT = "Timeout"
CONNECTION_FAILED = "ConnectionFailed"
STREAM_RESET = "StreamReset"
CLIENT_CLOSED = "ClientClosed"


@dataclass(frozen=True, slots=True)
class FcmRetryPolicy:
    """How often one send goes out again after a transient answer. The waits are FCM's
    (Retry-After, the next minute for a quota) or `FcmAnswer.retry_delay`'s backoff; a wait
    past the send's deadline ends the send with the transient answer (the caller retries later)."""

    max_retries: int = 5
    lost_base_delay_s: float = 0.5  # a lost connection or reset stream
    lost_max_delay_s: float = 30.0


def local(reason: str, decision: Decision = Decision.BACKOFF) -> FcmAnswer:
    return FcmAnswer(decision, 0, reason, reason)


class FcmJudge:
    """The core's `Judge` for FCM: `FcmAnswer`s, or `Retry`s as FCM's rules allow."""

    __slots__ = ("_retry",)

    def __init__(self, retry: FcmRetryPolicy):
        self._retry = retry

    def answered(self, x: Exchange) -> FcmAnswer | Retry:
        if x.status == 200:  # nearly every answer
            return delivered(x.body)
        retry_after = x.header(b"retry-after")
        answer = classify(x.status, x.body, retry_after.decode("latin-1") if retry_after else None,
                          refreshed=x.renewed)
        decision = answer.decision
        if decision is Decision.REFRESH:
            return RENEW
        if decision is Decision.RETRY_AFTER or decision is Decision.BACKOFF:
            if x.retries >= self._retry.max_retries:
                return answer
            return Retry(answer.retry_delay(x.retries), answer)
        return answer

    def failed(self, x: Exchange, failure: Failure) -> FcmAnswer | Retry:
        if failure is Failure.LOST or failure is Failure.RESET:
            answer = local(CONNECTION_FAILED if failure is Failure.LOST else STREAM_RESET)
            retry = self._retry
            if x.retries >= retry.max_retries:
                return answer
            return Retry(backoff(retry.lost_base_delay_s, x.retries, retry.lost_max_delay_s),
                         answer)
        if failure is Failure.CONNECT_FAILED:
            return local(CONNECTION_FAILED)
        if failure is Failure.CLOSED:
            return local(CLIENT_CLOSED)
        return local(TIMEOUT)  # TIMEOUT, UNSENT


class BearerTokens:
    """The pool's `Authorization` hook on `AccessTokens`: the header value of the cached token,
    a new generation whenever the token changes, and one refresh per refused generation."""

    __slots__ = ("_generation", "_token", "_value", "tokens")

    def __init__(self, tokens: AccessTokens):
        self.tokens = tokens
        self._token: str | None = None
        self._generation = 0
        self._value = b""

    def current(self) -> tuple[int, bytes]:
        token = self.tokens.cached()
        if token is not None and token != self._token:
            self._token, self._generation = token, self._generation + 1
            self._value = b"Bearer " + token.encode()
        # No fresh token (expired, invalidated): the last one goes out, FCM's 401 renews it.
        return self._generation, self._value

    def expired(self, generation: int):
        if generation != self._generation or self._token is None:
            return None  # an older token: the current one is already newer
        self.tokens.invalidate(self._token)
        return self.tokens.current()  # single flight: every waiter shares one refresh


class FCMClient:
    """Sends to FCM HTTP v1 for one service account's project.

    Every `send` returns an `FcmAnswer` and never raises for a send-specific problem (dead
    token, FCM errors, timeouts, lost connections, no access token). `close()` (or leaving
    `async with`) ends in-flight sends with ClientClosed and returns once every socket and
    task is gone.
    """

    def __init__(self, account: ServiceAccount, url: str = FCM_URL, ca_file: str | None = None,
                 connections: int = 2, max_streams_per_connection: int = 1000,
                 timeout_s: float = 30.0, retry: FcmRetryPolicy | None = None,
                 idle_ping_s: float = 60.0, ping_timeout_s: float = 5.0,
                 connect_timeout_s: float = 10.0, tokens: AccessTokens | None = None):
        if connections < 1 or max_streams_per_connection < 1:
            raise ValueError("connections and max_streams_per_connection must be at least 1")
        self.project_id = account.project_id
        self._own_tokens = tokens is None
        self.tokens = tokens or AccessTokens(account, ca_file=ca_file)
        self._auth = BearerTokens(self.tokens)
        self._host, self._port = _host_port(url)
        self._ssl = ssl_context(ca_file)
        self._settings = PoolSettings(connections, max_streams_per_connection, timeout_s,
                                      connect_timeout_s, idle_ping_s, ping_timeout_s)
        self._judge = FcmJudge(retry or FcmRetryPolicy())
        self._pool: HostPool | None = None
        # Encoded once: every send of this project has the same path and content type.
        self._path = path_field(f"/v1/projects/{account.project_id}/messages:send".encode())
        self._fields = literal(b"content-type", b"application/json")
        # Sends waiting for the first (or a lost) access token, and the one task getting it.
        self._waiting: list[tuple[Request, Callable[[FcmAnswer], None], Callable | None]] = []
        self._getting: asyncio.Task | None = None
        self._closed = False

    def request(self, body: bytes) -> Request:
        """The core's request for one `{"message": {...}}` body."""
        return Request(POST, self._path, self._fields, body)

    async def send(self, body: bytes) -> FcmAnswer:
        if self._closed:
            return local(CLIENT_CLOSED)
        if self.tokens.cached() is None:
            try:
                await self.tokens.current()
            except TokenError as exc:
                return _no_token(exc)
        return await self._open_pool().send(self.request(body))

    def send_soon(self, body: bytes, on_result: Callable[[FcmAnswer], None],
                  live: Callable[[], bool] | None = None) -> None:
        """`send` without a coroutine, for fan-outs: `on_result(answer)` is called once, from
        the event loop, never before this returns. `live`: see `h2client.Exchange`."""
        if self._closed:
            asyncio.get_running_loop().call_soon(on_result, local(CLIENT_CLOSED))
            return
        request = self.request(body)
        if self.tokens.cached() is None or self._waiting:
            self._waiting.append((request, on_result, live))
            if self._getting is None:
                self._getting = asyncio.get_running_loop().create_task(self._get_token())
            return
        self._open_pool().send_soon(request, on_result, live)

    async def _get_token(self) -> None:
        try:
            await self.tokens.current()
            error = None
        except TokenError as exc:
            error = _no_token(exc)
        except asyncio.CancelledError:
            error = local(CLIENT_CLOSED)
        waiting, self._waiting, self._getting = self._waiting, [], None
        if error is None and self._closed:
            error = local(CLIENT_CLOSED)
        if error is not None:
            for _, on_result, _ in waiting:
                on_result(error)
            return
        pool = self._open_pool()
        for request, on_result, live in waiting:
            pool.send_soon(request, on_result, live)

    def pool_stats(self) -> PoolStats:
        if self._pool is None:
            return PoolStats(0, 0, len(self._waiting))
        stats = self._pool.stats()
        return PoolStats(stats.connections, stats.streams, stats.queued + len(self._waiting))

    @property
    def connections(self) -> int:
        return self._pool.connections if self._pool else 0

    async def close(self) -> None:
        self._closed = True
        if self._getting is not None:
            self._getting.cancel()
            await asyncio.gather(self._getting, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        if self._own_tokens:
            await self.tokens.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _open_pool(self) -> HostPool:
        if self._pool is None:
            self._pool = HostPool(self._host, self._port, self._ssl, self._auth, self._judge,
                                  self._settings, "fcm")
        return self._pool


def _no_token(exc: TokenError) -> FcmAnswer:
    # Unreachable endpoint: try later; a refused service account: fix the configuration.
    return FcmAnswer(Decision.BACKOFF if exc.transient else Decision.FAIL, 0,
                     "ACCESS_TOKEN", str(exc))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"FCM URL must be https://host[:port], got {url!r}")
    return parts.hostname, parts.port or 443
