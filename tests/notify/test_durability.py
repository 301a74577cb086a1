"""Durability of the fan-out with real `owlmetry serve` processes: kill -9 and restart, two
servers on one PostgreSQL database, and one of two servers killed mid-fan-out.

The servers are child processes (NOTIFY_LEASE_SECONDS=2) that push to the in-process mock APNs
hosts of the `mocks` fixture (and the mock FCM of `fcm_mock`, with `fcm_settings`), so this test's
event loop keeps serving the mocks while they run.
The mocks are paced (few streams per connection, some latency) so that a fan-out of a few
hundred devices lasts long enough to be interrupted half-way.

Who claims what is made deterministic with SIGSTOP/SIGCONT, not with timing: a dispatcher
claims up to 500 deliveries per query and claims again at once while it holds fewer than 8000
devices, so a running server takes a whole fan-out of this size in a few milliseconds, and an
idle one polls every second. While one server is stopped only the other can claim; it is
stopped for a fraction of a second, well inside its lease. Where a race is wanted (both
servers claiming from one queue at the same moment), both are stopped while their requests
are written, and resumed together.
"""

import asyncio
import itertools
import os
import signal
import sys
import time
import uuid
from collections import Counter

import aiohttp
import orjson
import pytest

from owlmetry.clock import now_ms
from owlmetry.credentials import create_api_key
from owlmetry.store import DeliveryStatus, DeviceRegistration, Platform, Progress, PushOutcome
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC
from tests.fcm.identity import service_account_json
from tests.notify.conftest import token, wait_done
from tests.ports import free_port

LEASE_S = 2
SAFETY_S = 30  # a net under every wait; none of them takes more than a few seconds


# ---- server processes -------------------------------------------------------------------------

def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Server:
    """One `python -m owlmetry serve` child process."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, port: int):
        self.name, self.process, self.port = name, process, port
        self.output: list[bytes] = []  # stdout and stderr, read as they come
        self._reader: asyncio.Task | None = None

    async def started(self) -> None:
        """Return once the server listens; then keep reading its output (so that a full pipe
        never blocks it) until it exits."""
        stream = self.process.stdout
        while not self.output or b"listening on" not in self.output[-1]:
            line = await asyncio.wait_for(stream.readline(), SAFETY_S)
            assert line, f"{self.name} did not start:\n{self.log()}"
            self.output.append(line)

        async def keep_reading():
            async for line in stream:
                self.output.append(line)

        self._reader = asyncio.create_task(keep_reading())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    async def pause(self) -> None:
        """SIGSTOP, and return once the process is stopped (it cannot claim anything then)."""
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(self.process.pid) not in ("T", "t"):
            assert time.monotonic() < deadline, f"{self.name} did not stop"
            await asyncio.sleep(0.001)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL (works on a stopped process too) and reap it."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, SAFETY_S)


@pytest.fixture
async def servers(database_url, config, mocks, tls_files, auth_key):
    """`await servers(name)` -> a running Server on the test's database and mock APNs hosts,
    signing with `config`'s secret. Every server still alive is killed after the test,
    whatever happened."""
    started: list[Server] = []
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DATABASE_URL", "APNS_", "JWT_", "NOTIFY_", "COOKIE_",
                                  "ACCESS_", "SHUTDOWN_", "TRUSTED_", "SECRET_", "FCM_"))}
    if config.secret_key_file:
        clean["SECRET_KEY_FILE"] = config.secret_key_file
    env = {**clean, "NOTIFY_LEASE_SECONDS": str(LEASE_S), "APNS_CONNECTIONS": "1",
           "APNS_KEY_ID": KEY_ID, "APNS_TEAM_ID": TEAM_ID, "APNS_BUNDLE_ID": TOPIC,
           "APNS_KEY_P8": auth_key.decode(), "APNS_CA_FILE": tls_files[0],
           "APNS_PRODUCTION_URL": f"https://127.0.0.1:{mocks.production.port}",
           "APNS_SANDBOX_URL": f"https://127.0.0.1:{mocks.sandbox.port}"}

    async def start(name: str, **settings: str) -> Server:
        """`settings`: environment variables of this server alone."""
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "owlmetry", "serve", "--port", str(port),
            "--database", database_url, env={**env, **settings},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        server = Server(name, process, port)
        started.append(server)
        await server.started()
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.kill()
        for server in started:  # shown only when the test fails
            print(f"---- {server.name} (exit {server.process.returncode}) ----\n"
                  f"{server.log()[-3000:]}")


@pytest.fixture
def fcm_settings(fcm_mock, fcm_key, tls_files) -> dict[str, str]:
    """A server's settings for the mock FCM: `await servers(name, **fcm_settings)`."""
    return {"FCM_SERVICE_ACCOUNT": service_account_json(fcm_key, fcm_mock.token_uri),
            "FCM_URL": fcm_mock.url, "FCM_CA_FILE": tls_files[0]}


# ---- data and requests ----------------------------------------------------------------------

async def make_users(store, plans: list[list[str]], tokens: itertools.count) -> dict:
    """One user per plan (a list of device environments); user id -> [(token, environment)]."""
    async def one(environments):
        user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                       now_ms())
        devices = [(token(next(tokens)), environment) for environment in environments]
        await asyncio.gather(*(
            store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
                "ios_push", device_token, environment, None, None, None), now_ms())
            for device_token, environment in devices))
        return user.id, devices

    return dict(await asyncio.gather(*(one(plan) for plan in plans)))


def tokens_of(recipients: dict) -> list[str]:
    return [device_token for devices in recipients.values() for device_token, _ in devices]


async def server_key(store) -> str:
    _, secret = await create_api_key(store, str(uuid.uuid4()), "server", "durability", now_ms())
    return secret


async def notify(session: aiohttp.ClientSession, server: Server, key: str,
                 user_ids: list[str]) -> list[str]:
    async with session.post(f"{server.url}/v1/notifications",
                            json={"user_ids": user_ids, "type": "t", "title": "x"},
                            headers={"Authorization": f"Bearer {key}"}) as response:
        body = await response.json()
        assert response.status == 202, body
    assert len(body["notification_ids"]) == len(user_ids)
    return body["notification_ids"]


async def send_post(server: Server, key: str, user_ids: list[str]) -> tuple:
    """Write a POST /v1/notifications into the server's socket (it may be stopped: the kernel
    accepts the connection and holds the bytes); read the answer with `read_post_answer`."""
    body = orjson.dumps({"user_ids": user_ids, "type": "t", "title": "x"})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    return reader, writer, len(user_ids)


async def read_post_answer(reader, writer, count: int) -> list[str]:
    try:
        answer = await asyncio.wait_for(reader.read(), SAFETY_S)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202"), answer[:500]
    ids = orjson.loads(body)["notification_ids"]
    assert len(ids) == count
    return ids


async def all_claimed(store, ids: list[str]) -> None:
    """Return once every delivery of `ids` is held by some dispatcher."""
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while True:
        rows = await store.execute(
            "SELECT notification_id FROM notification_deliveries WHERE claimed_by IS NULL")
        if not set(ids) & {row[0] for row in rows}:
            return
        assert asyncio.get_running_loop().time() < deadline, "never claimed"
        await asyncio.sleep(0.005)


def pace(mock, *, latency_s: float, max_streams: int) -> None:
    """Set before the servers connect: SETTINGS_MAX_CONCURRENT_STREAMS goes out on connect."""
    mock.behaviour.latency_s = latency_s
    mock.behaviour.max_streams = max_streams


async def connections_closed(*hosts) -> None:
    """Once every connection the hosts have now is closed, everything a killed client wrote
    to them has been read and counted."""
    closing = [conn.closed for host in hosts for conn in list(host._connections)]
    await asyncio.wait_for(asyncio.gather(*closing), SAFETY_S)


async def pick_up_time(host, seen: Counter, since: float) -> float:
    """Seconds from `since` until `host` sees a request beyond the `seen` ones."""
    await asyncio.wait_for(host.requests_seen(sum(seen.values()) + 1), SAFETY_S)
    return asyncio.get_running_loop().time() - since


def requests_by_token(*hosts) -> Counter:
    seen = Counter()
    for host in hosts:
        seen.update(host.stats.requests)
    return seen


async def answered_tokens(store) -> dict[str, str]:
    """token -> outcome of every device with a final answer on record."""
    devices = dict(await store.execute("SELECT id, token FROM user_devices"))
    rows = await store.execute("SELECT device_id, outcome FROM notification_pushes "
                               "WHERE channel = 'mobile_push'")
    return {devices[device_id]: outcome for device_id, outcome in rows}


async def owners(store) -> Counter:
    return Counter(dict(await store.execute(
        "SELECT claimed_by, count(*) FROM notification_deliveries WHERE channel = 'mobile_push' "
        "GROUP BY claimed_by")))


async def push_progress(store, ids: list[str]) -> Progress:
    """Where the pushes of `ids` stand. The servers have no SMTP_URL, so each also skips the
    email deliveries the enqueue made; these tests are about the fan-out to devices."""
    placeholders = ", ".join(f"${i}" for i in range(1, len(ids) + 1))
    deliveries = await store.execute(
        f"SELECT status, count(*) FROM notification_deliveries WHERE channel = 'mobile_push' "
        f"AND notification_id IN ({placeholders}) GROUP BY status", *ids)
    pushes = await store.execute(
        f"SELECT outcome, count(*) FROM notification_pushes WHERE channel = 'mobile_push' "
        f"AND notification_id IN ({placeholders}) GROUP BY outcome", *ids)
    return Progress({DeliveryStatus(k): n for k, n in deliveries},
                    {PushOutcome(k): n for k, n in pushes})


def check_resumed_fan_out(tokens, requests, delivered, answered_at_kill, in_flight) -> set:
    """The assertions shared by the kill tests; returns the tokens sent twice."""
    assert all(delivered[t] >= 1 for t in tokens), "a device was never delivered to"
    assert all(requests[t] == 1 for t in answered_at_kill), \
        "a device with an answer on record was sent to again"
    assert all(requests[t] == 1 for t in tokens if t not in in_flight), \
        "a device not in flight at the kill was sent to more than once"
    assert all(requests[t] <= 2 for t in in_flight)
    twice = {t for t in tokens if requests[t] > 1}
    assert twice <= in_flight and len(twice) <= len(in_flight)
    return twice


# ---- the tests ------------------------------------------------------------------------------

async def test_a_server_killed_mid_fan_out_resumes_on_restart_without_resending(
        store, database_url, mocks, servers):
    recipients = await make_users(store, [["production", "sandbox"]] * 300, itertools.count())
    tokens = tokens_of(recipients)
    hosts = (mocks.production, mocks.sandbox)
    for host in hosts:
        pace(host, latency_s=0.03, max_streams=10)  # ~330 pushes/s per host
    key = await server_key(store)
    loop = asyncio.get_running_loop()

    first = await servers("first")
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, first, key, list(recipients))
    started = loop.time()
    await asyncio.wait_for(mocks.production.requests_seen(150), SAFETY_S)  # of 300
    await first.kill()
    killed = loop.time()
    await connections_closed(*hosts)

    seen_at_kill = requests_by_token(*hosts)
    production_at_kill = requests_by_token(mocks.production)
    answered_at_kill = await answered_tokens(store)
    in_flight = set(seen_at_kill) - set(answered_at_kill)
    at_kill = await push_progress(store, ids)
    assert set(answered_at_kill.values()) == {"delivered"}
    assert 0 < len(answered_at_kill) < len(tokens), "the kill was not mid-fan-out"
    assert at_kill.deliveries.get("pending", 0) > 0

    await servers("second")
    restarted = loop.time()
    # The lease of the dead server's claims runs out at most LEASE_S after the kill; the new
    # server claims at once on start and then polls every second.
    picked_up = await pick_up_time(mocks.production, production_at_kill, killed)
    await wait_done(store, ids, timeout=SAFETY_S)
    progress = await push_progress(store, ids)
    done = loop.time()

    assert progress.deliveries == {"sent": 300}
    assert progress.pushes == {"delivered": 600}
    requests = requests_by_token(*hosts)
    delivered = Counter(mocks.production.stats.delivered) + Counter(mocks.sandbox.stats.delivered)
    twice = check_resumed_fan_out(tokens, requests, delivered, answered_at_kill, in_flight)
    assert picked_up < LEASE_S + 3, "the restarted server took too long to resume"
    print(f"\n[durability kill/restart {database_url.split(':')[0]}] seen at kill "
          f"{sum(seen_at_kill.values())}/600, answered on record {len(answered_at_kill)}, "
          f"in flight {len(in_flight)}, sent twice {len(twice)}; first ran "
          f"{killed - started:.2f}s; kill to restarted {restarted - killed:.2f}s, to first "
          f"push {picked_up:.2f}s, to all done {done - killed:.2f}s; deliveries by owner "
          f"{sorted((await owners(store)).values())}")


async def test_a_server_killed_mid_fan_out_to_android_devices_resumes_without_resending(
        store, mocks, fcm_mock, fcm_settings, servers):
    # 300 users with an Android device each (one in sandbox for every one in production: FCM
    # has one host for both) and an iPhone.
    recipients = {}
    for n in range(300):
        user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                       now_ms())
        android = f"fcm{n}:APA91b" + "Xy_-" * 36
        for registration in (
                DeviceRegistration("mobile_push", android, ("production", "sandbox")[n % 2],
                                   None, None, None, Platform.ANDROID),
                DeviceRegistration("ios_push", token(n), "production", None, None, None)):
            await store.register_device(str(uuid.uuid4()), user.id, registration, now_ms())
        recipients[user.id] = android
    tokens = list(recipients.values())
    pace(fcm_mock, latency_s=0.03, max_streams=10)
    key = await server_key(store)

    first = await servers("first", **fcm_settings)
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, first, key, list(recipients))
    await asyncio.wait_for(fcm_mock.requests_seen(150), SAFETY_S)  # of 300
    await first.kill()
    await connections_closed(fcm_mock, mocks.production)

    seen_at_kill = requests_by_token(fcm_mock)
    answered_at_kill = {t: o for t, o in (await answered_tokens(store)).items() if t in tokens}
    in_flight = set(seen_at_kill) - set(answered_at_kill)
    assert set(answered_at_kill.values()) == {"delivered"}
    assert 0 < len(answered_at_kill) < len(tokens), "the kill was not mid-fan-out"

    await servers("second", **fcm_settings)
    await wait_done(store, ids, timeout=SAFETY_S)
    progress = await push_progress(store, ids)

    assert progress.deliveries == {"sent": 300}
    assert progress.pushes == {"delivered": 600}
    check_resumed_fan_out(tokens, requests_by_token(fcm_mock), Counter(fcm_mock.stats.delivered),
                          answered_at_kill, in_flight)


only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@only_postgresql
async def test_two_servers_on_one_postgresql_database_share_a_fan_out_without_double_sends(
        store, mocks, servers):
    one_or_two = [1, 2] * 75
    part_a = await make_users(store, [["production"] * n for n in one_or_two], itertools.count())
    part_b = await make_users(store, [["sandbox"] * n for n in one_or_two],
                              itertools.count(10_000))
    part_c = await make_users(store, [["production", "sandbox"][:n] for n in [1, 2] * 350],
                              itertools.count(20_000))
    tokens = tokens_of(part_a) + tokens_of(part_b) + tokens_of(part_c)
    for host in (mocks.production, mocks.sandbox):
        # ~250 pushes/s per server and host: the fan-out outlasts the 2 s lease, so the
        # servers must keep renewing what they hold while the other one claims.
        pace(host, latency_s=0.04, max_streams=10)
    key = await server_key(store)
    loop = asyncio.get_running_loop()

    one, two = await asyncio.gather(servers("one"), servers("two"))
    began = loop.time()
    # Part C (700 deliveries, more than one claim) in two halves, one to each server, both
    # written into their sockets while the servers are stopped: resumed together, they enqueue
    # and claim at the same moment, racing for the same queue.
    await asyncio.gather(one.pause(), two.pause())
    users_c = list(part_c)
    posts = [await send_post(one, key, users_c[:350]), await send_post(two, key, users_c[350:])]
    one.resume()
    two.resume()
    ids = [i for post in posts for i in await read_post_answer(*post)]
    async with aiohttp.ClientSession() as session:
        # Part A to server one while two is stopped: only one can claim it.
        await two.pause()
        ids_a = await notify(session, one, key, list(part_a))
        await all_claimed(store, ids_a)
        # Part B to server two while one is stopped, likewise.
        await one.pause()
        two.resume()
        ids_b = await notify(session, two, key, list(part_b))
        await all_claimed(store, ids_b)
        one.resume()
    await wait_done(store, ids + ids_a + ids_b, timeout=SAFETY_S)
    progress = await push_progress(store, ids + ids_a + ids_b)
    took = loop.time() - began

    assert progress.deliveries == {"sent": 1000}
    assert progress.pushes == {"delivered": len(tokens)}
    requests = requests_by_token(mocks.production, mocks.sandbox)
    doubles = {t: n for t, n in requests.items() if n != 1}
    assert not doubles, f"{len(doubles)} devices were not sent to exactly once"
    assert set(requests) == set(tokens)
    by_owner = await owners(store)
    assert len(by_owner) == 2 and None not in by_owner, by_owner
    owner_of = dict(await store.execute(
        "SELECT notification_id, claimed_by FROM notification_deliveries "
        "WHERE channel = 'mobile_push'"))
    assert len({owner_of[i] for i in ids_a}) == 1 and len({owner_of[i] for i in ids_b}) == 1
    assert owner_of[ids_a[0]] != owner_of[ids_b[0]]
    split_c = sorted(Counter(owner_of[i] for i in ids).values())
    print(f"\n[durability two servers] {len(tokens)} devices, 1000 deliveries in {took:.2f}s, "
          f"deliveries by owner {sorted(by_owner.values())} (the raced part: {split_c}), "
          f"sent twice 0")


@only_postgresql
async def test_the_survivor_of_two_servers_finishes_the_fan_out_of_the_one_killed(
        store, mocks, servers):
    victim_part = await make_users(store, [["production"] * 2] * 300, itertools.count())
    survivor_part = await make_users(store, [["sandbox"] * n for n in [1, 2] * 100],
                                     itertools.count(10_000))
    victim_tokens, survivor_tokens = tokens_of(victim_part), tokens_of(survivor_part)
    for host in (mocks.production, mocks.sandbox):
        pace(host, latency_s=0.03, max_streams=10)  # ~330 pushes/s per server and host
    key = await server_key(store)
    loop = asyncio.get_running_loop()

    victim, survivor = await asyncio.gather(servers("victim"), servers("survivor"))
    async with aiohttp.ClientSession() as session:
        # Each part claimed by its server alone (the other is stopped meanwhile); the victim
        # pushes only to the production host, the survivor only to the sandbox host.
        await victim.pause()
        survivor_ids = await notify(session, survivor, key, list(survivor_part))
        await asyncio.wait_for(mocks.sandbox.requests_seen(1), SAFETY_S)
        await survivor.pause()
        victim.resume()
        victim_ids = await notify(session, victim, key, list(victim_part))
        await asyncio.wait_for(mocks.production.requests_seen(1), SAFETY_S)
        survivor.resume()
    await asyncio.wait_for(mocks.production.requests_seen(300), SAFETY_S)  # of 600
    await victim.kill()
    killed = loop.time()
    # The survivor has no production connection yet: it gets one when it takes over.
    await connections_closed(mocks.production)

    seen_at_kill = requests_by_token(mocks.production)
    answered_at_kill = {t: outcome for t, outcome in (await answered_tokens(store)).items()
                        if t in set(victim_tokens)}
    in_flight = set(seen_at_kill) - set(answered_at_kill)
    assert set(answered_at_kill.values()) == {"delivered"}
    assert 0 < len(answered_at_kill) < len(victim_tokens), "the kill was not mid-fan-out"
    assert (await push_progress(store, victim_ids)).deliveries.get("pending", 0) > 0

    picked_up = await pick_up_time(mocks.production, seen_at_kill, killed)
    await wait_done(store, victim_ids + survivor_ids, timeout=SAFETY_S)
    progress = await push_progress(store, victim_ids + survivor_ids)
    took_over = loop.time() - killed

    assert progress.deliveries == {"sent": 500}
    assert progress.pushes == {"delivered": len(victim_tokens) + len(survivor_tokens)}
    requests = requests_by_token(mocks.production, mocks.sandbox)
    delivered = Counter(mocks.production.stats.delivered) + Counter(mocks.sandbox.stats.delivered)
    twice = check_resumed_fan_out(victim_tokens + survivor_tokens, requests, delivered,
                                  answered_at_kill, in_flight)
    assert all(requests[t] == 1 for t in survivor_tokens)
    by_owner = await owners(store)
    assert len(by_owner) == 2 and None not in by_owner, by_owner
    assert picked_up < LEASE_S + 3, "the survivor took too long to take over"
    print(f"\n[durability survivor] seen at kill {sum(seen_at_kill.values())}/600, answered on "
          f"record {len(answered_at_kill)}, in flight {len(in_flight)}, sent twice "
          f"{len(twice)}; kill to first push of the survivor {picked_up:.2f}s, to all done "
          f"{took_over:.2f}s; deliveries by owner "
          f"{sorted(by_owner.values())}")


# ---- SIGTERM --------------------------------------------------------------------------------

async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:  # refused, or reset as the listening socket closed with us in its backlog
        return True
    writer.close()
    return False


async def test_sigterm_mid_fan_out_finishes_what_is_under_way_and_loses_nothing(
        store, mocks, servers):
    recipients = await make_users(store, [["production", "sandbox"]] * 200, itertools.count())
    tokens = tokens_of(recipients)
    hosts = (mocks.production, mocks.sandbox)
    for host in hosts:
        pace(host, latency_s=0.03, max_streams=10)  # ~330 pushes/s per host: about 0.6 s
    key = await server_key(store)

    server = await servers("server")  # the default grace, 10 s: ample for this fan-out
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, server, key, list(recipients))
    await asyncio.wait_for(mocks.production.requests_seen(50), SAFETY_S)  # of 200
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), SAFETY_S) == 0
    await server.kill()  # reaps the output reader

    progress = await push_progress(store, ids)
    assert progress.deliveries == {"sent": 200}, "a delivery under way was cut short"
    assert progress.pushes == {"delivered": 400}
    assert requests_by_token(*hosts) == Counter({t: 1 for t in tokens})
    log = server.log()
    assert "stopping: no longer accepting connections" in log
    assert "Traceback" not in log


async def test_sigterm_past_the_grace_leaves_the_rest_pending_for_the_next_start(
        store, mocks, servers):
    recipients = await make_users(store, [["production", "sandbox"]] * 300, itertools.count())
    tokens = tokens_of(recipients)
    hosts = (mocks.production, mocks.sandbox)
    for host in hosts:
        pace(host, latency_s=0.1, max_streams=10)  # ~100 pushes/s per host: about 3 s
    key = await server_key(store)

    first = await servers("first", SHUTDOWN_GRACE_SECONDS="1")
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, first, key, list(recipients))
    await asyncio.wait_for(mocks.production.requests_seen(50), SAFETY_S)  # of 300
    first.process.send_signal(signal.SIGTERM)
    # It stops accepting at once, while the pushes under way go on for up to the grace.
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while not await refused(first.port):
        assert asyncio.get_running_loop().time() < deadline, "still accepting after SIGTERM"
        await asyncio.sleep(0.01)
    assert first.process.returncode is None, "exited without waiting for the pushes under way"
    assert await asyncio.wait_for(first.process.wait(), SAFETY_S) == 0
    await first.kill()
    await connections_closed(*hosts)

    seen_at_stop = requests_by_token(*hosts)
    answered_at_stop = await answered_tokens(store)
    in_flight = set(seen_at_stop) - set(answered_at_stop)
    at_stop = await push_progress(store, ids)
    assert 0 < len(answered_at_stop) < len(tokens), "the stop was not mid-fan-out"
    assert set(answered_at_stop.values()) == {"delivered"}
    assert at_stop.deliveries.get("pending", 0) > 0
    assert sum(at_stop.deliveries.values()) == 300
    assert "go back to the queue" in first.log()
    assert "Traceback" not in first.log()

    await servers("second")
    await wait_done(store, ids, timeout=SAFETY_S)
    progress = await push_progress(store, ids)
    assert progress.deliveries == {"sent": 300}
    assert progress.pushes == {"delivered": 600}
    requests = requests_by_token(*hosts)
    delivered = Counter(mocks.production.stats.delivered) + Counter(mocks.sandbox.stats.delivered)
    check_resumed_fan_out(tokens, requests, delivered, answered_at_stop, in_flight)


async def test_a_fan_out_killed_three_times_ends_with_one_answer_per_device_and_no_loss(
        store, database_url, mocks, servers):
    """benchmarks/crash_fanout.py in small: 2,000 devices, SIGKILL at three moments of the
    fan-out, a new server each time."""
    recipients = await make_users(store, [["production", "sandbox"]] * 1000, itertools.count())
    tokens = tokens_of(recipients)
    hosts = (mocks.production, mocks.sandbox)
    for host in hosts:
        pace(host, latency_s=0.01, max_streams=20)
    key = await server_key(store)
    server = await servers("start")
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, server, key, list(recipients))
    at_risk = Counter()  # token -> kills at which it was sent and its answer not on record
    before = Counter()
    for kill, moment in enumerate((400, 1000, 1600)):
        await asyncio.wait_for(mocks.production.requests_seen(moment // 2), SAFETY_S)
        await server.kill()
        await connections_closed(*hosts)
        sent = requests_by_token(*hosts)
        answered = await answered_tokens(store)
        at_risk.update({t for t, n in sent.items() if n > before[t]} - set(answered))
        before = sent
        assert len(answered) < len(tokens), "the kill was not mid-fan-out"
        server = await servers(f"restart {kill + 1}")
    await wait_done(store, ids, timeout=SAFETY_S)

    progress = await push_progress(store, ids)
    assert progress.deliveries == {"sent": 1000}
    assert progress.pushes == {"delivered": 2000}
    per_device = await store.execute("SELECT device_id, count(*) FROM notification_pushes "
                                     "WHERE channel = 'mobile_push' GROUP BY device_id")
    assert len(per_device) == 2000 and {count for _, count in per_device} == {1}
    delivered = Counter(mocks.production.stats.delivered) + Counter(mocks.sandbox.stats.delivered)
    assert all(delivered[t] >= 1 for t in tokens), "a device was never delivered to"
    requests = requests_by_token(*hosts)
    assert all(requests[t] <= 1 + at_risk[t] for t in tokens), \
        "a device was sent to again though its answer was on record at every kill"
