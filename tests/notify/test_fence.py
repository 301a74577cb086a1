"""A lease that fences itself: two dispatchers, each on its own database connections and its
own mock APNs host (so the mocks' receipts say who sent what), and a database that stops
answering the first one for longer than a lease while its pushes are slow.

The pause is real: on PostgreSQL the first dispatcher reaches the database through a TCP proxy
in this test that stops passing bytes; on SQLite another connection holds the write lock
(BEGIN IMMEDIATE), which stops every writer, both dispatchers alike, as a stalled disk or a
long `backup` would. Either way the first dispatcher's renewals do not commit, its lease runs
out by its own clock, and from then on it must start no send of that work: the only devices
that may get the push twice are the ones whose stream was in flight at that moment (at most
the first mock's stream limit).
"""

import asyncio
import sqlite3
import urllib.parse
from collections import Counter

import pytest

from owlmetry.apns import APNsClient
from owlmetry.apns.mock import MockAPNs, MockBehaviour
from owlmetry.notify.channels.mobile_push import MobilePush
from owlmetry.notify.dispatcher import Dispatcher, enqueue
from owlmetry.notify.providers.apns import APNs
from owlmetry.notify.providers.fcm import FCM, NOT_CONFIGURED
from owlmetry.preferences import Defaults
from owlmetry.store import Platform, open_store
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC, fast_retry
from tests.notify.conftest import CONTENT, user_with_devices, wait_done

LEASE_MS = 2000
DEVICES = 120
STREAMS = 4  # the first mock's stream limit: the most sends in flight at any moment
SAFETY_S = 30  # a net under every wait


class StallingProxy:
    """A TCP proxy to `port` that passes bytes both ways until `stall()`, and again after
    `resume()`; bytes read while stalled are held, not dropped."""

    def __init__(self, port: int):
        self._upstream = port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source, sink) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()


def channel_on(mock: MockAPNs, tls_files, auth_key) -> dict:
    url = f"https://127.0.0.1:{mock.port}"
    return {"mobile_push": MobilePush({
        Platform.IOS: APNs(APNsClient(KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0],
                                      retry=fast_retry(3), timeout_s=10, connections=1,
                                      production_url=url, sandbox_url=url)),
        Platform.ANDROID: FCM(None, NOT_CONFIGURED)})}


async def until(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def recorded(store) -> int:
    return (await store.execute("SELECT count(*) FROM notification_pushes"))[0][0]


@pytest.fixture
async def hosts(tls_files, auth_key):
    """The first dispatcher's APNs (paced: few streams, some latency) and the second's."""
    first = MockAPNs(*tls_files, auth_key, KEY_ID, TEAM_ID,
                     MockBehaviour(max_streams=STREAMS, latency_s=0.05))
    second = MockAPNs(*tls_files, auth_key, KEY_ID, TEAM_ID, MockBehaviour())
    for host in (first, second):
        await host.start()
    yield first, second
    for host in (first, second):
        await host.stop()


class Pause:
    """Stops the database answering the first dispatcher; see the module's docstring."""

    def __init__(self, database_url: str, proxy: StallingProxy | None):
        self._url, self._proxy = database_url, proxy
        self._lock: sqlite3.Connection | None = None

    def start(self) -> None:
        if self._proxy is not None:
            self._proxy.stall()
            return
        self._lock = sqlite3.connect(self._url.removeprefix("sqlite:///"), isolation_level=None)
        self._lock.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        if self._proxy is not None:
            self._proxy.resume()
        elif self._lock is not None:
            self._lock.execute("COMMIT")
            self._lock.close()
            self._lock = None


async def pausable(database_url: str) -> tuple[str, Pause, StallingProxy | None]:
    """The URL the first dispatcher opens, the pause of its database, and the proxy (if any)."""
    if not database_url.startswith("postgresql"):
        return database_url, Pause(database_url, None), None
    parts = urllib.parse.urlsplit(database_url)
    proxy = StallingProxy(parts.port)
    await proxy.start()
    url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    return url, Pause(database_url, proxy), proxy


async def users_with_a_device(store, n: int) -> tuple[list[str], list[str]]:
    user_ids, tokens = [], []
    for i in range(n):
        user_id, user_tokens = await user_with_devices(store, ["production"], i)
        user_ids.append(user_id)
        tokens += user_tokens
    return user_ids, tokens


async def test_a_dispatcher_whose_lease_ran_out_sends_nothing_more_while_another_takes_over(
        database_url, store, hosts, tls_files, auth_key):
    first_host, second_host = hosts
    first_url, pause, proxy = await pausable(database_url)
    first_store, second_store = await open_store(first_url), await open_store(database_url)
    first = second = None
    try:
        user_ids, tokens = await users_with_a_device(store, DEVICES)
        ids = await enqueue(store, user_ids, CONTENT, ["mobile_push"], Defaults())

        first = Dispatcher(first_store, channel_on(first_host, tls_files, auth_key),
                           lease_ms=LEASE_MS, poll_s=0.05, retry_base_ms=20)
        first.start()
        await until(lambda: _at_least(store, 20), "the first dispatcher's answers on record")
        second = Dispatcher(second_store, channel_on(second_host, tls_files, auth_key),
                            lease_ms=LEASE_MS, poll_s=0.05, retry_base_ms=20)
        second.start()

        # From now on each request the first host receives is answered after longer than a
        # lease; once every request it received before is answered and on record, the
        # database stops answering the first dispatcher. (The mock fixes a request's latency
        # as it arrives: up to STREAMS of them are still due an answer at the old pace, and
        # an answer that comes after the pause cannot be recorded, so its device rightly gets
        # the push again from the next holder.)
        first_host.behaviour.latency_s = 3 * LEASE_MS / 1000
        before = Counter(first_host.stats.requests)

        async def caught_up():
            answered = sum(first_host.stats.responses_by_status.values())
            return answered >= before.total() and await recorded(store) == answered
        await until(caught_up, "the first host's answers all on record")
        pause.start()
        # The last renewal that committed came before the pause: a lease later, the first
        # dispatcher's lease has run out by its own clock. The sends it started since the
        # slow-down were on the wire then: they take longer than a lease and the pause.
        await asyncio.sleep(LEASE_MS / 1000)
        on_the_wire = {t for t, n in first_host.stats.requests.items() if n > before[t]}
        await asyncio.sleep(LEASE_MS / 1000)
        # The first host answers new streams fast again: a dispatcher that went on with its
        # queue once its slow sends are answered would now send it all.
        first_host.behaviour.latency_s = 0.0
        pause.end()
        await wait_done(store, ids, timeout=SAFETY_S)

        async def first_done():
            answered = sum(first_host.stats.responses_by_status.values())
            return (first.held == 0
                    and answered == sum(first_host.stats.requests.values()))
        await until(first_done, "the first host answered everything it was sent")
        await first.recorder.flush()

        receipts = Counter(first_host.stats.delivered) + Counter(second_host.stats.delivered)
        assert all(receipts[t] >= 1 for t in tokens), "a device never got the push"
        twice = {t for t in tokens if receipts[t] > 1}
        assert len(twice) <= STREAMS, f"{len(twice)} devices got the push twice"
        assert all(receipts[t] == 2 for t in twice)
        assert twice <= on_the_wire
        # Every device has exactly one final answer on record, and every delivery ended.
        rows = await store.execute(
            "SELECT device_id, count(*) FROM notification_pushes GROUP BY device_id")
        assert len(rows) == DEVICES and all(count == 1 for _, count in rows)
        statuses = await store.execute(
            "SELECT status, count(*) FROM notification_deliveries GROUP BY status")
        assert dict(statuses) == {"sent": DEVICES}
        assert first.fenced > 0
    finally:
        pause.end()
        for dispatcher in (first, second):
            if dispatcher is not None:
                await dispatcher.stop(grace_s=1)
        for opened in (first_store, second_store):
            await opened.close()
        if proxy is not None:
            await proxy.stop()


async def _at_least(store, n: int) -> bool:
    return await recorded(store) >= n



async def test_sends_stopped_by_a_lease_that_ran_out_are_sent_later_not_failed(
        database_url, store, hosts, tls_files, auth_key):
    """One dispatcher, a database paused past its lease while its queue drains at a steady
    pace: the sends its lease stopped are neither failed (one attempt allowed) nor lost."""
    host, _ = hosts
    url, pause, proxy = await pausable(database_url)
    own_store = await open_store(url)
    dispatcher = None
    try:
        user_ids, tokens = await users_with_a_device(store, DEVICES)
        ids = await enqueue(store, user_ids, CONTENT, ["mobile_push"], Defaults())
        dispatcher = Dispatcher(own_store, channel_on(host, tls_files, auth_key),
                                lease_ms=LEASE_MS, poll_s=0.05, retry_base_ms=20,
                                max_attempts=1)
        host.behaviour.latency_s = 0.1  # STREAMS answers per 0.1 s: the queue outlasts a lease
        dispatcher.start()
        await until(lambda: _at_least(store, 8), "answers on record")
        pause.start()
        await asyncio.sleep(2 * LEASE_MS / 1000)
        pause.end()
        await wait_done(store, ids, timeout=SAFETY_S)

        statuses = await store.execute(
            "SELECT status, count(*) FROM notification_deliveries GROUP BY status")
        assert dict(statuses) == {"sent": DEVICES}
        assert all(host.stats.delivered[t] >= 1 for t in tokens)
        assert dispatcher.fenced > 0
    finally:
        pause.end()
        if dispatcher is not None:
            await dispatcher.stop(grace_s=1)
        await own_store.close()
        if proxy is not None:
            await proxy.stop()
