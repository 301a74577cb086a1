"""The connections to one APNs host: opening on demand, fair waiting for capacity, retries.

Owns up to N long-lived connections, a FIFO of pushes waiting for a free stream, Apple's retry
rules (refused streams go out again at once; 429, 5xx, resets and lost connections after an
exponential, jittered delay, a bounded number of times; permanent reasons never), the
per-push deadline, and PINGs that vet idle connections. Must not build requests, parse HTTP/2
or know about payload formats.
"""

import asyncio
import functools
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from owlmetry.backoff import backoff

from .connection import Connection, StreamFailure
from .push_result import (
    CLIENT_CLOSED,
    CONNECTION_FAILED,
    STREAM_RESET,
    TIMEOUT,
    PushResult,
    delivered,
    from_answer,
    is_transient,
    local_error,
    parse_error_body,
)
from .token import ProviderToken
from .wire import Request

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays before sending a push again after a transient failure.

    Apple suggests waiting long before retrying 5xx; inside one `send` the pool only rides out
    short storms, and `PushResult.retry_later` tells the caller to try again much later.
    """

    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    too_many_requests_delay_s: float = 5.0  # 429 is about one device token, so wait per push

    def delay(self, retry: int, status: int) -> float:
        base = self.too_many_requests_delay_s if status == 429 else self.base_delay_s
        return backoff(base, retry, self.max_delay_s)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 2
    max_streams_per_connection: int = 1000
    timeout_s: float = 30.0  # one `send`, from the call to its result, retries included
    connect_timeout_s: float = 10.0
    idle_ping_s: float = 60.0  # an idle connection older than this is PINGed before use
    ping_timeout_s: float = 5.0
    retry: RetryPolicy = RetryPolicy()


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool's state at one moment (for monitoring)."""

    connections: int  # sockets open or opening
    streams: int  # pushes on the wire, waiting for their answer
    queued: int  # pushes waiting for a free stream


class _Pending:
    """One push in the pool; the connection fills in the answer fields."""

    __slots__ = ("apns_id", "chunks", "deadline", "fut", "generation", "request", "status")

    def __init__(self, request: Request, deadline: float):
        self.request = request
        self.deadline = deadline


class HostPool:
    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext, token: ProviderToken,
                 settings: PoolSettings):
        self.host = host
        self._port = port
        self._ssl = ssl_context
        self._token = token
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._conns: list[Connection] = []  # connected and set up, newest last
        self._sockets: set[Connection] = set()  # everything with a transport, until it is lost
        self._queue: deque[_Pending] = deque()
        self._pauses: set[asyncio.Future] = set()
        self._tasks: set[asyncio.Task] = set()
        self._settling: set[asyncio.Task] = set()  # send_soon pushes on the general path
        self._opening = False
        self._connect_error: str | None = None
        self._closed = False
        self._tick_s = min(1.0, settings.timeout_s / 4, settings.ping_timeout_s / 2)
        self._spawn(self._sweep_forever())

    @property
    def connections(self) -> int:
        return len(self._sockets)

    def stats(self) -> PoolStats:
        return PoolStats(len(self._sockets),
                         sum(len(conn.in_flight) for conn in self._sockets), len(self._queue))

    async def send(self, request: Request) -> PushResult:
        if self._closed:
            return local_error(CLIENT_CLOSED, 0)
        p = self._first_attempt(request)
        return await self._settle(p, await p.fut)

    def send_soon(self, request: Request, on_result: Callable[[PushResult], None]) -> None:
        """`send` for callers with many pushes: `on_result(result)` is called once, later, from
        the loop. A push that succeeds at the first try (nearly all) costs no task."""
        if self._closed:
            self._loop.call_soon(on_result, local_error(CLIENT_CLOSED, 0))
            return
        p = self._first_attempt(request)
        p.fut.add_done_callback(functools.partial(self._first_outcome, p, on_result))

    def _first_attempt(self, request: Request) -> _Pending:
        p = _Pending(request, self._loop.time() + self._settings.timeout_s)
        self._attempt(p)
        return p

    def _attempt(self, p: _Pending) -> None:
        p.fut = self._loop.create_future()
        p.status, p.apns_id, p.chunks, p.generation = 0, None, [], 0
        self._submit(p)

    def _first_outcome(self, p: _Pending, on_result, fut: asyncio.Future) -> None:
        outcome = fut.result()
        if outcome is p and p.status == 200:
            on_result(delivered(p.apns_id, 1))
            return
        # Anything else takes the general path (retries, token renewal) in a task of its own.
        task = self._loop.create_task(self._settle(p, outcome))
        self._settling.add(task)
        task.add_done_callback(functools.partial(self._settled, on_result))

    def _settled(self, on_result, task: asyncio.Task) -> None:
        self._settling.discard(task)
        on_result(local_error(CLIENT_CLOSED, 0) if task.cancelled() else task.result())

    async def _settle(self, p: _Pending, outcome) -> PushResult:
        """The result of a push whose latest attempt ended with `outcome` (the connection's
        answer, `p` itself, or a StreamFailure), sending it again as Apple's rules allow."""
        loop = self._loop
        retry = self._settings.retry
        attempts = retries = 0
        renewed = False
        while True:
            if outcome is p:
                attempts += 1
                status = p.status
                if status == 200:
                    return delivered(p.apns_id, attempts)
                reason, timestamp = parse_error_body(b"".join(p.chunks))
                if reason == "ExpiredProviderToken" and not renewed:
                    renewed = True
                    self._token.expired(p.generation)
                    self._attempt(p)
                    outcome = await p.fut
                    continue
                failed = from_answer(status, reason, timestamp, p.apns_id, attempts)
                if not is_transient(status, reason):
                    return failed
            elif outcome is StreamFailure.REFUSED:
                # Never processed: safe to send again, and it costs no attempt.
                self._attempt(p)
                outcome = await p.fut
                continue
            elif outcome is StreamFailure.LOST or outcome is StreamFailure.RESET:
                attempts += 1
                status = 0
                failed = local_error(CONNECTION_FAILED if outcome is StreamFailure.LOST
                                     else STREAM_RESET, attempts)
            elif outcome is StreamFailure.TIMEOUT:
                return local_error(TIMEOUT, attempts + 1)
            elif outcome is StreamFailure.CLOSED:
                return local_error(CLIENT_CLOSED, attempts)
            else:  # the deadline passed before a stream was free
                return local_error(self._connect_error and CONNECTION_FAILED or TIMEOUT,
                                   attempts)
            if retries >= retry.max_retries:
                return failed
            delay = retry.delay(retries, status)
            retries += 1
            if loop.time() + delay >= p.deadline:
                return failed
            if not await self._pause(delay):
                return local_error(CLIENT_CLOSED, attempts)
            self._attempt(p)
            outcome = await p.fut

    async def close(self) -> None:
        """Fail what is queued or in flight with ClientClosed; return once every socket and task
        of the pool is gone."""
        if not self._closed:
            self._closed = True
            for pause in self._pauses:
                if not pause.done():
                    pause.set_result(False)
            for p in self._queue:
                if not p.fut.done():
                    p.fut.set_result(StreamFailure.CLOSED)
            self._queue.clear()
            for task in self._tasks:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        for conn in list(self._sockets):
            conn.close()
        await asyncio.gather(*(conn.closed for conn in list(self._sockets)))

    # --- capacity ----------------------------------------------------------------------------

    def _submit(self, p: _Pending) -> None:
        if not self._queue:
            conn = self._room()
            if conn is not None:
                conn.submit(p)
                return
        self._queue.append(p)
        self._grow()

    def _room(self) -> Connection | None:
        for conn in self._conns:
            if conn.has_room():
                if conn.idle():
                    now = self._loop.time()
                    if conn.needs_ping(now, self._settings.idle_ping_s):
                        conn.ping(now + self._settings.ping_timeout_s)
                        continue
                return conn
        return None

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            p = queue[0]
            if p.fut.done():
                queue.popleft()
                continue
            conn = self._room()
            if conn is None:
                self._grow()
                return
            queue.popleft()
            conn.submit(p)

    def _grow(self) -> None:
        if self._closed or self._opening:
            return
        alive = sum(1 for conn in self._conns if not conn.going_away)
        if alive < self._settings.max_connections:
            self._opening = True
            self._spawn(self._open())

    def _changed(self) -> None:
        if self._queue:
            self._drain()

    def _lost(self, conn: Connection) -> None:
        self._sockets.discard(conn)
        if conn in self._conns:
            self._conns.remove(conn)
        if not self._closed:
            self._changed()

    # --- connecting --------------------------------------------------------------------------

    async def _open(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    conn = await self._connect()
                except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
                    failures += 1
                    self._connect_error = f"{type(exc).__name__}: {exc}"
                    log.warning("apns %s: connect failed (%d): %s", self.host, failures,
                                self._connect_error)
                    if not self._queue or not await self._pause(
                            backoff(0.05, failures, 5.0)):
                        return
                    continue
                self._connect_error = None
                self._conns.append(conn)
                log.info("apns %s: connected (%d open), max streams %d", self.host,
                         len(self._conns), conn.limit)
                return
        finally:
            self._opening = False
            if not self._closed:
                self._changed()

    async def _connect(self) -> Connection:
        s = self._settings

        def protocol() -> Connection:
            return Connection(self.host, self._port, self._token, s.max_streams_per_connection,
                              self._changed, self._lost)

        async with asyncio.timeout(s.connect_timeout_s):
            transport, conn = await self._loop.create_connection(
                protocol, self.host, self._port, ssl=self._ssl, server_hostname=self.host)
            self._sockets.add(conn)
            try:
                if not await conn.ready:
                    raise ConnectionError("closed before HTTP/2 settings (is ALPN h2 offered?)")
            except BaseException:
                transport.abort()
                raise
        return conn

    # --- timers ------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        """Enforce deadlines: streams and queued pushes past theirs, PINGs left unanswered."""
        while await self._pause(self._tick_s):
            now = self._loop.time()
            for conn in list(self._conns):
                conn.expire(now)
            for p in self._queue:
                if p.deadline <= now and not p.fut.done():
                    p.fut.set_result(None)

    async def _pause(self, delay: float) -> bool:
        """Sleep that `close` cuts short; False if it did."""
        waiter = self._loop.create_future()
        handle = self._loop.call_later(delay, _resolve, waiter, True)
        self._pauses.add(waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self._pauses.discard(waiter)

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)
