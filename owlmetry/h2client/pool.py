"""The connections to one host: opening on demand, fair waiting for capacity, sending again.

Owns up to N long-lived connections, a FIFO of exchanges waiting for a free stream (one sent
again goes to its front, and to another connection than its last when one has room), the
per-request deadline, PINGs that vet idle connections, backoff between failed connects, and the
loop that carries out a provider's decisions: a refused stream (REFUSED_STREAM, or above a
GOAWAY's last stream id: never processed) goes out again at once, unasked; a `Retry` from the
provider's `Judge` after its delay, or after the `Authorization` hook renewed the credential.
Must not build requests, parse HTTP/2, or interpret statuses and bodies (that is the judge's).
"""

import asyncio
import functools
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from owlmetry.backoff import backoff

from .connection import Connection
from .exchange import Authorization, Exchange, Failure, Judge, Request, Retry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 2
    max_streams_per_connection: int = 1000
    timeout_s: float = 30.0  # one `send`, from the call to its result, retries included
    connect_timeout_s: float = 10.0
    idle_ping_s: float = 60.0  # an idle connection older than this is PINGed before use
    ping_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool's state at one moment (for monitoring)."""

    connections: int  # sockets open or opening
    streams: int  # requests on the wire, waiting for their answer
    queued: int  # requests waiting for a free stream


_RESEND = Retry(0.0, None)  # a refused stream: never processed, so sent again at once


class HostPool:
    """`send(request)` returns what the `judge` makes of the request's last attempt; so does
    the `on_result` callback of `send_soon`. `label` names the provider in log lines;
    `unread_headers` go to the connections (see `Connection`)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext,
                 authorization: Authorization, judge: Judge, settings: PoolSettings,
                 label: str = "h2", unread_headers: frozenset[bytes] = frozenset()):
        self.host = host
        self.label = label
        self._port = port
        self._ssl = ssl_context
        self._auth = authorization
        self._judge = judge
        self._settings = settings
        self._unread_headers = unread_headers
        self._loop = asyncio.get_running_loop()
        self._conns: list[Connection] = []  # connected and set up, newest last
        self._sockets: set[Connection] = set()  # everything with a transport, until it is lost
        self._queue: deque[Exchange] = deque()
        self._pauses: set[asyncio.Future] = set()
        self._tasks: set[asyncio.Task] = set()
        self._settling: set[asyncio.Task] = set()  # send_soon requests on the general path
        self._opening = False
        self._connect_error: str | None = None
        self._closed = False
        self._tick_s = min(1.0, settings.timeout_s / 4, settings.ping_timeout_s / 2)
        # An answered exchange's future holds the exchange as its result: a cycle, which only
        # the garbage collector frees, so that every push's objects outlived it (to the
        # collector's oldest generation, read by no collection for minutes in a fan-out: a
        # million-device one kept 500,000 objects and 200 MB more). An exchange that ends
        # takes this done future instead, and refcounting frees it at once.
        self._ended = self._loop.create_future()
        self._ended.set_result(None)
        self._spawn(self._sweep_forever())

    @property
    def connections(self) -> int:
        return len(self._sockets)

    @property
    def connect_error(self) -> str | None:
        """Why the latest connect failed, until one succeeds."""
        return self._connect_error

    def stats(self) -> PoolStats:
        return PoolStats(len(self._sockets),
                         sum(len(conn.in_flight) for conn in self._sockets), len(self._queue))

    async def send(self, request: Request) -> Any:
        x = Exchange(request, self._loop.time() + self._settings.timeout_s)
        if self._closed:
            return self._judge.failed(x, Failure.CLOSED)
        x.fut = self._loop.create_future()  # (a new exchange is its first attempt already)
        self._submit(x)
        try:
            outcome = await x.fut
            if outcome is x:  # answered: nearly always, so without the general _decide
                x.attempts = 1
                decision = self._judge.answered(x)
                if decision.__class__ is not Retry:
                    return decision
            else:
                decision = self._decide(x, outcome)
            return await self._settle(x, decision)
        finally:
            x.fut = self._ended

    def send_soon(self, request: Request, on_result: Callable[[Any], None],
                  live: Callable[[], bool] | None = None) -> None:
        """`send` for callers with many requests: `on_result(result)` is called once, later,
        from the loop. A request the judge settles at the first answer (nearly all) costs no
        task. `live`: see `Exchange` (a dispatcher whose lease on the work ran out)."""
        x = Exchange(request, self._loop.time() + self._settings.timeout_s, live)
        if self._closed:
            self._loop.call_soon(on_result, self._judge.failed(x, Failure.CLOSED))
            return
        x.fut = self._loop.create_future()  # (a new exchange is its first attempt already)
        self._submit(x)
        x.fut.add_done_callback(functools.partial(self._first_outcome, x, on_result))

    def _attempt_again(self, x: Exchange) -> None:
        x.fut = self._loop.create_future()
        x.status, x.headers, x.chunks, x.generation = 0, (), [], 0
        x.again = True
        self._submit(x)

    def _first_outcome(self, x: Exchange, on_result, fut: asyncio.Future) -> None:
        outcome = fut.result()
        if outcome is x:  # as in send
            x.attempts = 1
            decision = self._judge.answered(x)
        else:
            decision = self._decide(x, outcome)
        if decision.__class__ is not Retry:
            x.fut = self._ended
            on_result(decision)
            return
        # A retry takes the general path (delays, renewal) in a task of its own.
        task = self._loop.create_task(self._settle(x, decision))
        self._settling.add(task)
        task.add_done_callback(functools.partial(self._settled, x, on_result))

    def _settled(self, x: Exchange, on_result, task: asyncio.Task) -> None:
        self._settling.discard(task)
        x.fut = self._ended
        on_result(self._judge.failed(x, Failure.CLOSED) if task.cancelled() else task.result())

    def _decide(self, x: Exchange, outcome) -> Any:
        """The judge's decision on an attempt that ended with `outcome` (the connection's
        answer, `x` itself, or a Failure, or None: never got a stream)."""
        if outcome is x:
            x.attempts += 1
            return self._judge.answered(x)
        if outcome is Failure.REFUSED:
            return _RESEND
        if outcome is None:
            outcome = Failure.CONNECT_FAILED if self._connect_error else Failure.UNSENT
        elif outcome is not Failure.CLOSED:  # LOST, RESET, TIMEOUT: it was on the wire
            x.attempts += 1
        return self._judge.failed(x, outcome)

    async def _settle(self, x: Exchange, decision) -> Any:
        """The result of an exchange, given the decision on its latest attempt: send it again
        as long as the decisions are `Retry`s."""
        loop = self._loop
        while decision.__class__ is Retry:
            if self._closed:  # a task that started after close() ran: nothing may go out
                return self._judge.failed(x, Failure.CLOSED)
            if x.live is not None and not x.live():
                return self._judge.failed(x, Failure.UNSENT)
            if decision is _RESEND:
                pass
            elif decision.renew:
                x.renewed = True
                renewal = self._auth.expired(x.generation)
                if renewal is not None:
                    ended = await self._renewal(renewal, x.deadline)
                    if ended is not True:
                        return self._judge.failed(x, ended)
            else:
                delay = decision.delay_s
                if loop.time() + delay >= x.deadline:
                    return decision.result
                x.retries += 1
                if delay > 0:
                    x.waited += 1
                    if not await self._pause(delay):
                        return self._judge.failed(x, Failure.CLOSED)
            self._attempt_again(x)
            decision = self._decide(x, await x.fut)
        return decision

    async def close(self) -> None:
        """End what is queued or in flight with Failure.CLOSED; return once every socket and
        task of the pool is gone."""
        if not self._closed:
            self._closed = True
            for pause in self._pauses:
                if not pause.done():
                    pause.set_result(False)
            for p in self._queue:
                if not p.fut.done():
                    p.fut.set_result(Failure.CLOSED)
            self._queue.clear()
            for task in self._tasks:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        for conn in list(self._sockets):
            conn.close()
        await asyncio.gather(*(conn.closed for conn in list(self._sockets)))

    # --- capacity ----------------------------------------------------------------------------

    def _submit(self, p: Exchange) -> None:
        if p.live is not None and not p.live():
            p.fut.set_result(None)  # never on the wire: UNSENT
            return
        if not self._queue:
            conn = self._room(p.conn)
            if conn is not None:
                conn.submit(p)
                return
        if p.again:
            # Sent again (after its delay): it waited its turn once. Behind a fan-out's queue
            # each retry waited seconds more, and a push's retries, not the work, set the
            # fan-out's end (benchmarks/RESULTS.md, "hostile APNs").
            self._queue.appendleft(p)
        else:
            self._queue.append(p)
        self._grow()

    def _room(self, avoid: Connection | None = None) -> Connection | None:
        """A connection with a free stream; `avoid` (a retry's last connection) only when no
        other has one: a 5xx or a lost stream may be that connection's or its server's."""
        fallback = None
        for conn in self._conns:
            if conn.has_room():
                if not conn.in_flight and conn.idle():  # (busy: no call to ask)
                    now = self._loop.time()
                    if conn.needs_ping(now, self._settings.idle_ping_s):
                        conn.ping(now + self._settings.ping_timeout_s)
                        continue
                if conn is avoid:
                    fallback = conn
                    continue
                return conn
        return fallback

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            p = queue[0]
            if p.fut.done():
                queue.popleft()
                continue
            if p.live is not None and not p.live():
                queue.popleft()
                p.fut.set_result(None)
                continue
            conn = self._room(p.conn)
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
                    log.warning("%s %s: connect failed (%d): %s", self.label, self.host,
                                failures, self._connect_error)
                    if not self._queue or not await self._pause(
                            backoff(0.05, failures, 5.0)):
                        return
                    continue
                self._connect_error = None
                self._conns.append(conn)
                log.info("%s %s: connected (%d open), max streams %d", self.label, self.host,
                         len(self._conns), conn.limit)
                return
        finally:
            self._opening = False
            if not self._closed:
                self._changed()

    async def _connect(self) -> Connection:
        s = self._settings

        def protocol() -> Connection:
            return Connection(self.host, self._port, self._auth, s.max_streams_per_connection,
                              self._changed, self._lost, self.label, self._unread_headers)

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
        """Enforce deadlines: streams and queued requests past theirs (or no longer live), PINGs
        left unanswered."""
        while await self._pause(self._tick_s):
            now = self._loop.time()
            for conn in list(self._conns):
                conn.expire(now)
            for p in self._queue:
                if not p.fut.done() and (p.deadline <= now
                                         or (p.live is not None and not p.live())):
                    p.fut.set_result(None)

    async def _pause(self, delay: float) -> bool:
        """Sleep that `close` cuts short; False if it did (or had)."""
        if self._closed:
            return False
        waiter = self._loop.create_future()
        handle = self._loop.call_later(delay, _resolve, waiter, True)
        self._pauses.add(waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self._pauses.discard(waiter)

    async def _renewal(self, renewal: Awaitable, deadline: float) -> bool | Failure:
        """Wait for the authorization hook's renewal: True once it ended (well or not: the
        next answer tells), else the Failure that came first (the deadline, a close)."""
        if self._closed:
            return Failure.CLOSED
        waiter = self._loop.create_future()
        done = asyncio.ensure_future(renewal)
        done.add_done_callback(functools.partial(_renewed, waiter))
        handle = self._loop.call_later(max(0.0, deadline - self._loop.time()), _resolve, waiter,
                                       Failure.UNSENT)
        self._pauses.add(waiter)  # close() resolves it False
        try:
            ended = await waiter
        finally:
            handle.cancel()
            self._pauses.discard(waiter)
        return Failure.CLOSED if ended is False else ended

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _renewed(waiter: asyncio.Future, renewal: asyncio.Future) -> None:
    if not renewal.cancelled():
        renewal.exception()  # a failed renewal is the hook's to report; the next answer tells
    _resolve(waiter, True)


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)
