#!/usr/bin/env python3
"""Fan-out: one notification to 10,000 users with 1-3 devices each, from the POST to the last
outcome recorded, on SQLite and PostgreSQL, against the shared harness's Node mock APNs; and,
in the same run and against the same mock, the APNs pool alone sending as many pushes.

    python benchmarks/fanout.py [--backend sqlite|postgresql|both] [--runs 3] [--users 10000]
        [--seed 1] [--connections 4] [--poll-ms 20]
        [--devices-per-user K]  # K devices for every user instead of 1-3
        [--unread N]       # every recipient has N unread notifications beforehand (not timed;
                           # full_inbox.py compares full and empty inboxes in one sitting)
        [--py-spy DIR]     # + one extra fan-out per backend under py-spy (--gil), summarized
        [--statements]     # + one extra fan-out per backend with every database call timed
        [--rich]           # the requests with every push option (issue 14), RICH below
        [--idempotency-key]  # each request with an Idempotency-Key of its own
        [--android-share S]  # that share of the devices Android, through a mock FCM (issue 13)
        [--register-rate R]  # + a device registered through the API R times a second meanwhile
        [--waits] [--stalls]  # + one extra fan-out per backend under the wait / stall probe

One mock (`node mock_apns.js` of the harness, pinned to core 1) serves the whole run, warmed
first by three pool-alone runs that are not counted (unless --no-pool: a fresh Node mock's
first runs are its slowest, and only the first backend's first pool run would pay). Per
backend, --runs pairs, the whole script holding /tmp/owl-bench.lock (flock):

1. The pool alone: `benchmarks/apns_throughput.py` (the APNs pool benchmark, run as it is)
   pinned to core 0, one push to each of the N device tokens, with the server's limits:
   --connections (APNS_CONNECTIONS, default 4) x 1,000 streams, i.e. 4,000 at a time.
2. A fan-out on a fresh database (SQLite: a new file in a temp folder; PostgreSQL: a new
   database in one throwaway cluster with PostgreSQL's default durable settings, unpinned):
   10,000 users and their 1-3 production devices (seeded random, the same N tokens as step 1),
   written through the store (users in one batched INSERT with `store.execute_batch`, devices
   with `register_device`), and a server API key (`owlmetry keys create`); with --unread N, N
   unread notifications per user and the unread counts that go with them (batched INSERTs with
   `store.execute_batch`, then ANALYZE, as a database in use has statistics, then a checkpoint
   and `sync`, so the seeding's writes are not flushed during the timed part); not timed.
   Then a fresh `owlmetry serve` pinned to core 0 (`taskset -c 0`), APNS_* pointing at the
   mock for both environments, APNS_CA_FILE = the mock's certificate. This script pins itself
   to core 1 (with the mock) while it measures. Reset the mock's counters, send one POST
   /v1/notifications with all the user ids, then poll "is any delivery
   still pending?" (`... WHERE status = 'pending' ORDER BY available_at LIMIT 1`: the queue's
   index, with `store.execute`, every
   --poll-ms) until none is: the end-to-end time is from sending the POST to that poll.
   Afterwards `store.progress(ids)` must say every delivery sent and N devices delivered, and
   the mock must have seen exactly N requests, N distinct tokens answered 200, no duplicates.

A million devices (`--devices N`): users of 1-3 devices (seeded) until there are N devices,
written in bulk by `bulk_seed.py` (PostgreSQL: COPY into a template database, copied for each
run; SQLite: executemany in transactions of 200,000 rows into a file, copied for each run and,
with --seed-cache DIR, kept for later invocations), and the notification sent as POSTs of
--post-users users (50,000, the most one request takes) one after the other, each timed. The
server's resident memory is sampled every 50 ms (/proc/PID/status VmRSS) and read as VmHWM
at the end; `lost` and `duplicates` come from the mock's receipts (every seeded token answered
200 exactly once). --json prints one line per run (backend, devices, seconds, devices_per_second,
post_ms = the slowest POST, max_rss_mb, lost, duplicates, the CPU figures, and written_mb:
what the server and the database processes wrote to storage, /proc/PID/io); --no-pool skips
the pool-alone runs, which at a million pushes double the time. --register-rate R registers a
new device (POST /v1/devices, a new token each time, for one user who is not a recipient) R
times a second on a fixed schedule from the first POST until the poll finds nothing pending,
and adds the registrations' count and p50/p99/max (ms, as this client saw them) to the line.

    python benchmarks/fanout.py --devices 1000000 --backend both --runs 1 --no-pool --json \
        --seed-cache /tmp/fanout-seeds --time-limit 3000

Figures per run: devices/s end-to-end; the POST's own latency; the first push and the last
answer as the mock saw them (its clock and ours are the same host's); CPU seconds of the server
process from /proc/<pid>/stat, split into the event loop's thread and the others (aiosqlite's);
CPU of the PostgreSQL postmaster and its backends; the pool alone's push/s and CPU.

Prints a markdown table (the run with the median devices/s per backend) and one JSON line per
backend with every run. Exit status 1 when any correctness check fails. The profiles are extra
runs, never the timed ones: py-spy pauses nothing with --nonblocking but costs core 1 time,
and the statement timer wraps every database call of its server.
"""

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp
import orjson

import android_share
import bulk_seed
import harness
import profiling
from enqueue_vs_register import percentile
from harness import CLIENT_CORE, SERVER_CORE, STREAMS_PER_CONNECTION
from owlmetry.clock import now_ms
from owlmetry.ids import new_id, new_ordered_id
from owlmetry.retention import DAY_MS
from owlmetry.store import DeviceRegistration, open_store

HERE = os.path.dirname(os.path.abspath(__file__))

INSERT_USERS = """
WITH batch (id, email, created_at) AS ({batch})
INSERT INTO users (id, email, created_at) SELECT id, email, created_at FROM batch
"""
# --unread: old notifications, unread, written user after user, with time-ordered ids (as the
# server makes them) and times that grow row by row, so that every index grows at its end
# (random places in 100 million rows would make the seeding, not the run, the benchmark).
# Their unread counts come with them, as the enqueue keeps them. The N old requests' contents
# are written first, one each, shared by every user's rows, as the enqueue writes them.
INSERT_UNREAD_CONTENTS = """
WITH batch (id) AS ({batch})
INSERT INTO notification_contents (id, type, title) SELECT id, 'bench.old', 'Unread' FROM batch
"""
INSERT_UNREAD = """
WITH batch (id, user_id, content_id, created_at) AS ({batch})
INSERT INTO notifications (id, user_id, content_id, created_at)
SELECT id, user_id, content_id, created_at FROM batch
"""
INSERT_UNREAD_COUNTS = """
WITH batch (user_id, unread) AS ({batch})
INSERT INTO unread_counts (user_id, unread) SELECT user_id, unread FROM batch
"""
UNREAD_ROWS_PER_STATEMENT = 50_000
# PostgreSQL makes the rows itself (20 million of them through Python, as batches of arrays,
# took longer than the runs they were for): for the users $1 (in order) and the contents $2
# (in order), user k's j-th row is made at $3 + k * len($2) + j, and its id is a version 7 id of
# that time with the row's number in its last bits. Users a statement at a time:
# UNREAD_USERS_PER_STATEMENT.
INSERT_UNREAD_POSTGRES = """
WITH u (id, k) AS (SELECT id, k - 1 FROM unnest($1::text[]) WITH ORDINALITY AS u (id, k)),
c (id, j) AS (SELECT id, j - 1 FROM unnest($2::text[]) WITH ORDINALITY AS c (id, j)),
made (user_id, content_id, at, hex) AS (
    SELECT u.id, c.id, $3 + u.k * cardinality($2::text[]) + c.j,
           lpad(to_hex($3 + u.k * cardinality($2::text[]) + c.j), 12, '0')
    FROM u CROSS JOIN c)
INSERT INTO notifications (id, user_id, content_id, created_at)
SELECT substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-7000-8000-' || hex, user_id,
       content_id, at
FROM made ORDER BY at
"""
UNREAD_USERS_PER_STATEMENT = 100

# Is anything still pending? Stops at the first pending row of the queue's index, so each poll
# costs the database (which shares core 1 with the mock) next to nothing; a count(*) every 20 ms
# did not. The ORDER BY makes it the index: without it PostgreSQL read the table from its start
# (`Seq Scan ... LIMIT 1`, the planner expecting a pending row at once), through every delivery
# ended so far and their dead versions, 50 times a second: a cost per poll that grew with the
# run, and a benchmark's PostgreSQL CPU per device that grew with N.
# Pool-alone runs against the fresh mock before anything is measured (`warm_up`).
WARM_UP_RUNS = 3

PENDING = """
SELECT count(*) FROM (
    SELECT 1 FROM notification_deliveries WHERE status = 'pending'
    ORDER BY available_at LIMIT 1) AS any_pending
"""
# Exact times from the database, to compare with the poll: first and last device answer
# recorded, last delivery ended (the server's clock, ms since the epoch, taken just before
# the write that stored them).
DELIVERY_TIMES = """
WITH batch (id) AS ({batch})
SELECT max(d.finished_at), count(*) FROM batch AS b
JOIN notification_deliveries AS d ON d.notification_id = b.id
"""
PUSH_TIMES = """
WITH batch (id) AS ({batch})
SELECT min(p.answered_at), max(p.answered_at), count(*) FROM batch AS b
JOIN notification_pushes AS p ON p.notification_id = b.id
"""


# ---- the pool alone -----------------------------------------------------------------------

def pool_alone(mock: harness.MockAPNs, n: int, connections: int) -> dict:
    """benchmarks/apns_throughput.py as it is, pinned where the server runs, same limits."""
    mock.reset()
    mock0 = mock.cpu()
    done = subprocess.run(
        ["taskset", "-c", SERVER_CORE, sys.executable, os.path.join(HERE, "apns_throughput.py"),
         "--url", mock.url, "--ca", mock.cert, "--key", mock.auth_key,
         "--key-id", harness.KEY_ID, "--team-id", harness.TEAM_ID, "--topic", harness.TOPIC,
         "--count", str(n), "--concurrency", str(connections * STREAMS_PER_CONNECTION),
         "--connections", str(connections), "--peer", "pool-alone"],
        capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    time.sleep(0.3)  # let the mock close its streams before reading its counters
    result["mock_cpu_s"] = mock.cpu() - mock0
    stats = mock.stats()
    result["problems"] = harness.mock_problems(stats, n) + (
        [f"pool: {result['failed']} failed {result.get('errors')}"] if result["failed"] else [])
    result["mock"] = {k: stats[k] for k in ("requests_received", "connections_opened",
                                             "max_concurrent_streams_all_connections")}
    return result


def warm_up(mock: harness.MockAPNs, n: int, connections: int) -> None:
    """The pool alone WARM_UP_RUNS times, not counted: a fresh Node mock's first runs are the
    slowest (26,800 and 28,000 pushes/s, then 48,300: RESULTS.md, "Session 12"), and only the
    first backend's first pool run would pay for it."""
    rates = [pool_alone(mock, n, connections)["per_second"] for _ in range(WARM_UP_RUNS)]
    print(f"mock warm-up (not counted): the pool alone {' / '.join(f'{r:,.0f}' for r in rates)}"
          " pushes/s", file=sys.stderr)


# ---- the database -------------------------------------------------------------------------

def plan(users: int, seed: int, devices_per_user: int | None = None) -> list[int]:
    """Devices per user: 1-3, seeded, or the same number for every user."""
    if devices_per_user:
        return [devices_per_user] * users
    rng = random.Random(seed)
    return [rng.randint(1, 3) for _ in range(users)]


def plan_devices(n: int, seed: int, devices_per_user: int | None = None) -> list[int]:
    """Devices per user (1-3 seeded, or K each) until there are exactly `n` devices."""
    rng = random.Random(seed)
    per_user, total = [], 0
    while total < n:
        count = min(devices_per_user or rng.randint(1, 3), n - total)
        per_user.append(count)
        total += count
    return per_user


async def seed_unread_postgres(url: str, users: list[str], contents: list[str],
                               first_at: int) -> None:
    """PostgreSQL: the unread rows of `users` (in order), made in the database (see
    INSERT_UNREAD_POSTGRES). Without the inbox's key check on each row (the users exist, the
    seeding made them) and with the table's other indexes built once at the end instead of
    grown row by row: 20 million rows in minutes, not tens of them."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")  # no foreign key checks
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'notifications' AND indexname <> 'notifications_pkey'")
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
        for start in range(0, len(users), UNREAD_USERS_PER_STATEMENT):
            await conn.execute(INSERT_UNREAD_POSTGRES,
                               users[start:start + UNREAD_USERS_PER_STATEMENT], contents,
                               first_at + start * len(contents))
        for _, definition in indexes:
            await conn.execute(definition)
    finally:
        await conn.close()


async def seed_unread(store, user_ids: list[str], unread: int, now: int,
                      url: str | None = None) -> None:
    """`unread` unread notifications for each user, and their counts; `url`: a PostgreSQL
    database's, to make its rows in the database."""
    rows = []
    made_at = now - DAY_MS - len(user_ids) * unread
    contents = [new_ordered_id(made_at - unread + i) for i in range(unread)]
    await store.execute_batch(INSERT_UNREAD_CONTENTS, ("text",), [(c,) for c in contents])
    users = sorted(user_ids)
    if url is not None:
        await seed_unread_postgres(url, users, contents, made_at + 1)
        users = []
    types = ("text", "text", "text", "bigint")
    for user_id in users:
        for content_id in contents:
            made_at += 1
            rows.append((new_ordered_id(made_at), user_id, content_id, made_at))
            if len(rows) == UNREAD_ROWS_PER_STATEMENT:
                await store.execute_batch(INSERT_UNREAD, types, rows)
                rows = []
    await store.execute_batch(INSERT_UNREAD, types, rows)
    await store.execute_batch(INSERT_UNREAD_COUNTS, ("text", "bigint"),
                              [(user_id, unread) for user_id in user_ids])
    # PostgreSQL: VACUUM too, or the autovacuum that ten million fresh rows set off scans them
    # during the timed fan-out that follows and the run measures the seeding's aftermath.
    await store.execute("VACUUM ANALYZE" if store.engine.name == "postgresql" else "ANALYZE")
    # Likewise the gigabytes just written: PostgreSQL's checkpoint of them and the kernel's
    # writeback would otherwise run during the timed fan-out.
    if store.engine.name == "postgresql":
        await store.execute("CHECKPOINT")
    await asyncio.to_thread(os.sync)


async def seed_database(url: str, per_user: list[int], unread: int = 0,
                        android: float = 0.0, first_token: int = 0) -> list[str]:
    """Users and their production devices (token i = the harness's token(first_token + i);
    with `android`, that share Android: `android_share.registrations`), and `unread` unread
    notifications each; the user ids."""
    store = await open_store(url)
    try:
        await store.migrate()
        now = now_ms()
        run = secrets.token_hex(3)
        users = [(new_id(), f"fanout{i}-{run}@bench.example", now) for i in range(len(per_user))]
        await store.execute_batch(INSERT_USERS, ("text", "text", "bigint"), users)
        registrations = []
        index = 0
        devices = android_share.registrations(sum(per_user), android) if android else None
        for (user_id, _, _), count in zip(users, per_user):
            for _ in range(count):
                registrations.append(store.register_device(
                    new_id(), user_id, devices[index] if devices else
                    DeviceRegistration("ios_push", harness.apns_token(first_token + index),
                                       "production", "1.0", "iPhone15,3", "iOS 18.2"), now))
                index += 1
        stored = await asyncio.gather(*registrations)
        if any(device is None for device in stored):
            raise RuntimeError("a seeded device's user does not exist")
        user_ids = [user_id for user_id, _, _ in users]
        if unread:
            await seed_unread(store, user_ids, unread, now,
                              url if store.engine.name == "postgresql" else None)
        return user_ids
    finally:
        await store.close()


def server_env(mock: harness.MockAPNs, connections: int) -> dict:
    env = dict(os.environ, APNS_KEY_ID=harness.KEY_ID, APNS_TEAM_ID=harness.TEAM_ID,
               APNS_BUNDLE_ID=harness.TOPIC, APNS_KEY_P8_PATH=mock.auth_key,
               APNS_PRODUCTION_URL=mock.url, APNS_SANDBOX_URL=mock.url, APNS_CA_FILE=mock.cert,
               APNS_CONNECTIONS=str(connections), JWT_SECRET=secrets.token_urlsafe(32))
    for name in ("ACCESS_LOG", "DATABASE_URL", "APNS_KEY_P8"):
        env.pop(name, None)
    return env


# ---- one timed fan-out --------------------------------------------------------------------

# `--rich`: every push option of issue 14 that keeps the per-recipient work of today's request
# (the badge stays the unread count).
RICH = {"push_type": "alert", "priority": 5, "ttl_seconds": 3600, "collapse_id": "bench-fanout",
        "thread_id": "bench", "category": "BENCH", "mutable_content": True,
        "interruption_level": "time-sensitive", "relevance_score": 0.5, "sound": "bench.caf"}


REGISTRAR = "registrar@bench.example"  # not 'fanout%': never a recipient (bulk_seed)


async def register_steadily(url: str, jwt: str, rate: float, stop: asyncio.Event) -> dict:
    """A new device registered through the API `rate` times a second until `stop` is set, on a
    fixed schedule (open loop, as `enqueue_vs_register.py`: a stall shows in every registration
    it holds up); their latencies' p50/p99/max."""
    headers = {"Authorization": f"Bearer {jwt}"}
    latencies: list[float] = []
    failures: list[str] = []

    async def register(session: aiohttp.ClientSession) -> None:
        await harness.register_new_device(session, url, headers, latencies, failures)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await (await session.get(f"{url}/healthz")).read()
        pending, tick, started = set(), 0, time.perf_counter()
        while not stop.is_set():
            task = asyncio.create_task(register(session))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(
                    0.0, started + tick / rate - time.perf_counter()))
        await asyncio.gather(*pending)
    pick = functools.partial(percentile, latencies)
    return {"registrations": len(latencies),
            "register_p50_ms": round(pick(0.50) * 1000, 1) if latencies else None,
            "register_p99_ms": round(pick(0.99) * 1000, 1) if latencies else None,
            "register_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
            "register_failures": failures[:5]}


async def fanout_once(url: str, api_key: str, user_ids: list[str], store, n_devices: int,
                      poll_s: float, timeout_s: float, post_users: int, rich: bool = False,
                      keyed: bool = False, registering: tuple[str, float] | None = None) -> dict:
    """POSTs of `post_users` users each, one after the other (the fan-out of the first ones
    is under way while the next are sent), then the poll until nothing is pending. `rich`:
    with RICH's push options; `keyed`: each POST with an Idempotency-Key of its own;
    `registering`: (a user's JWT, a rate): devices registered at that rate from the first POST
    to the end (`register_steadily`)."""
    bodies = [orjson.dumps({"user_ids": user_ids[start:start + post_users], "type": "bench",
                            "title": "Fan-out", "body": "one notification to every user",
                            **(RICH if rich else {})})
              for start in range(0, len(user_ids), post_users)]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    polls = 0
    ids, posts_ms = [], []
    stop_registering = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        await (await session.get(f"{url}/healthz")).read()  # the connection is open already
        wall0, t0 = time.time(), time.perf_counter()
        registrations = asyncio.create_task(
            register_steadily(url, *registering, stop_registering)) if registering else None
        for body in bodies:
            t = time.perf_counter()
            if keyed:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            async with session.post(f"{url}/v1/notifications", data=body,
                                    headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
            posts_ms.append((time.perf_counter() - t) * 1000)
            if status != 202:
                raise RuntimeError(f"POST /v1/notifications: {status} {answer[:300]!r}")
            ids += orjson.loads(answer)["notification_ids"]
    while True:
        ((pending,),) = await store.execute(PENDING)
        polls += 1
        if pending == 0:
            break
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"{pending} deliveries still pending after {timeout_s:.0f}s")
        await asyncio.sleep(poll_s)
    total_s = time.perf_counter() - t0
    stop_registering.set()
    registered = await registrations if registrations else {}
    progress = await store.progress(ids)
    keys = [(i,) for i in ids]
    ((last_end, deliveries),) = await store.execute_batch(DELIVERY_TIMES, ("text",), keys)
    ((first_answer, last_answer, pushes),) = await store.execute_batch(
        PUSH_TIMES, ("text",), keys)
    return {
        "wall0_ms": wall0 * 1000, "seconds": total_s, "per_second": n_devices / total_s,
        "post_ms": max(posts_ms), "posts_ms": [round(ms, 1) for ms in posts_ms],
        "polls": polls, "recipients": len(ids),
        "deliveries": dict(progress.deliveries), "pushes": dict(progress.pushes),
        "db_first_answer_ms": first_answer - wall0 * 1000,
        "db_last_answer_ms": last_answer - wall0 * 1000,
        "db_last_end_ms": last_end - wall0 * 1000, "db_rows": [deliveries, pushes],
        **registered,
    }


def fanout_checks(run: dict, n_users: int, n_devices: int, stats: dict,
                  n_apns: int | None = None) -> list[str]:
    problems = harness.mock_problems(stats, n_devices if n_apns is None else n_apns)
    if run["recipients"] != n_users:
        problems.append(f"POST returned {run['recipients']} ids, expected {n_users}")
    if run["deliveries"] != {"sent": n_users}:
        problems.append(f"deliveries {run['deliveries']}, expected {{'sent': {n_users}}}")
    if run["pushes"] != {"delivered": n_devices}:
        problems.append(f"pushes {run['pushes']}, expected {{'delivered': {n_devices}}}")
    return problems


def timed_fanout(mock: harness.MockAPNs, url: str, server_pid: int, db_pid: int | None,
                 api_key: str, user_ids: list[str], store, n_devices: int, args, loop,
                 jwt: str | None = None) -> dict:
    mock.reset()
    if args.fcm:
        args.fcm.reset()
    n_android = android_share.android_count(n_devices, args.android_share)
    cpu0, mock0 = harness.cpu_seconds(server_pid), mock.cpu()
    threads0 = harness.thread_cpu_seconds(server_pid)
    db0 = harness.tree_cpu_seconds(db_pid) if db_pid else 0.0
    writers = [server_pid] + (harness.tree_pids(db_pid) if db_pid else [])
    written0 = harness.written_bytes(writers)
    load0 = os.getloadavg()[0]
    with harness.pinned_self(CLIENT_CORE), harness.PeakMemory(server_pid) as memory:
        run = loop.run_until_complete(fanout_once(
            url, api_key, user_ids, store, n_devices, args.poll_ms / 1000,
            max(args.run_timeout, n_devices / 400), args.post_users, args.rich,
            args.idempotency_key, (jwt, args.register_rate) if jwt else None))
    # The server is fresh for every run: its high-water mark is this run's.
    run["max_rss_mb"] = round(memory.max_mb, 1)
    run["server_cpu_s"] = harness.cpu_seconds(server_pid) - cpu0
    threads1 = harness.thread_cpu_seconds(server_pid)
    run["loop_thread_cpu_s"] = threads1[0] - threads0[0]
    run["other_threads_cpu_s"] = threads1[1] - threads0[1]
    run["mock_cpu_s"] = mock.cpu() - mock0
    run["db_cpu_s"] = harness.tree_cpu_seconds(db_pid) - db0 if db_pid else None
    # Written by the server and the database during the run, what a disk must sustain per device
    # (PostgreSQL writes some of it later, at its next checkpoint: the long runs count most).
    run["written_mb"] = round((harness.written_bytes(writers) - written0) / 2**20, 1)
    run["load_1m"] = max(load0, os.getloadavg()[0])
    time.sleep(0.3)
    stats = mock.stats()
    # The receipts: every seeded token is expected to be answered 200 exactly once.
    run["lost"] = n_devices - n_android - stats["unique_tokens_ok"]
    run["duplicates"] = stats["duplicate_ok"]
    run["first_push_ms"] = stats["first_request_ts"] - run["wall0_ms"]
    run["last_push_ms"] = stats["last_response_ts"] - run["wall0_ms"]
    run["mock"] = {k: stats[k] for k in ("requests_received", "unique_tokens_ok", "duplicate_ok",
                                          "responses_by_status", "connections_opened",
                                          "max_concurrent_streams_all_connections")}
    run["problems"] = fanout_checks(run, len(user_ids), n_devices, stats, n_devices - n_android)
    run["problems"] += run.get("register_failures", [])
    if args.fcm:
        android_share.check_fanout(run, args.fcm, n_android)
    return run


def profiled_fanout(mock, url, pid, api_key, user_ids, store, n_devices, args, loop,
                    out: str, jwt: str | None = None) -> dict:
    """A fan-out with py-spy (on the client core) sampling the server into `out`."""
    with profiling.py_spy_recording(pid, out, "--rate", str(args.py_spy_rate),
                                    *args.py_spy_flags.split(), "--threads", "--duration", "600",
                                    core=CLIENT_CORE):
        time.sleep(1.0)  # py-spy attaches
        run = timed_fanout(mock, url, pid, None, api_key, user_ids, store, n_devices, args, loop,
                           jwt)
    run["profile"] = out
    return run


# ---- one backend --------------------------------------------------------------------------

def prepare_database(databases, name: str, per_user: list[int], args, work: str):
    """A database for one run and its users' ids: with --devices, a copy of the bulk-seeded
    one (seeded on first use); else a new one seeded through the store."""
    if not args.devices:
        database = databases.empty(name)
        return database, asyncio.run(seed_database(database, per_user, args.unread,
                                                   args.android_share))
    database = databases.database(per_user, args.seed, name, work)
    user_ids = asyncio.run(bulk_seed.user_ids_of(database))
    if args.unread:
        asyncio.run(add_unread(database, user_ids, args.unread))
    return database, user_ids


async def add_unread(url: str, user_ids: list[str], unread: int) -> None:
    store = await open_store(url)
    try:
        await seed_unread(store, user_ids, unread, now_ms(),
                          url if store.engine.name == "postgresql" else None)
    finally:
        await store.close()


def fresh_fanout(kind: str, backend: str, databases, db_pid: int | None,
                 mock: harness.MockAPNs, per_user: list[int], args, work: str, tag: str) -> dict:
    """Seed a database for the run, start a server on it, time one fan-out, stop the server.
    kind: "timed", "py-spy" (the server sampled) or "statements" (its database calls timed)."""
    n_devices = sum(per_user)
    t = time.perf_counter()
    database, user_ids = prepare_database(databases, tag, per_user, args, work)
    api_key = harness.owlmetry_cli("keys", "create", "--kind", "server", "--name", "fanout bench",
                                   "--database", database)
    env = server_env(mock, args.connections)
    jwt = None
    if args.register_rate:  # after the recipients were read: the registrar is not one
        harness.owlmetry_cli("users", "create", REGISTRAR, "--database", database, env=env)
        jwt = harness.owlmetry_cli("users", "token", REGISTRAR, "--database", database, env=env)
    seeded_s = time.perf_counter() - t
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(open_store(database))
    launcher = ("-m", "owlmetry")
    statements_out = os.path.join(work, f"{backend}-{tag}-statements.json")
    probe_out = os.path.join(work, f"{backend}-{tag}-{kind}.json")
    if kind == "statements":
        launcher = profiling.statement_timer_launcher(statements_out)
    elif kind == "waits":
        launcher = profiling.wait_probe_launcher(probe_out)
    elif kind == "stalls":
        launcher = profiling.stall_probe_launcher(probe_out)
    try:
        if args.fcm:
            env.update(args.fcm.server_env())
        log = os.path.join(work, f"{backend}-{tag}-server.log")
        with harness.running_server(database, env, log, launcher) as (url, pid):
            if kind == "py-spy":
                out = os.path.join(args.py_spy, f"fanout-{backend}.txt")
                run = profiled_fanout(mock, url, pid, api_key, user_ids, store, n_devices, args,
                                      loop, out, jwt)
            else:
                run = timed_fanout(mock, url, pid, db_pid, api_key, user_ids, store, n_devices,
                                   args, loop, jwt)
    finally:
        loop.run_until_complete(store.close())
        loop.close()
    if kind == "statements":
        with open(statements_out) as f:
            run["statements"] = json.load(f)
    if kind in ("waits", "stalls"):
        with open(probe_out) as f:
            run[kind] = json.load(f)
    run["seeded_s"] = seeded_s
    return run


def bench_backend(backend: str, databases, db_pid: int | None, mock: harness.MockAPNs,
                  per_user, args, work: str) -> dict | None:
    """Runs pairs: the pool alone (unless --no-pool), then a fan-out on a fresh database and a
    fresh server; their summary (None with --runs 0: the probes only)."""
    n_devices = sum(per_user)
    version = harness.code_version()
    pool_runs, runs = [], []
    for i in range(args.runs):
        if not args.no_pool:
            pool_runs.append(android_share.both_pools_alone(
                pool_alone, mock, args.fcm, n_devices, args.connections) if args.fcm
                else pool_alone(mock, n_devices, args.connections))
            r = pool_runs[-1]
            print(f"[{backend}] pool alone {i + 1}/{args.runs}: {r['per_second']:,.0f}/s, "
                  f"{r['seconds']:.3f}s, CPU {r['cpu_seconds_in_window']:.2f}s, mock CPU "
                  f"{r['mock_cpu_s']:.2f}s {'; '.join(r['problems'])}", file=sys.stderr)
        runs.append(fresh_fanout("timed", backend, databases, db_pid, mock, per_user, args,
                                 work, f"run{i}"))
        r = runs[-1]
        print(f"[{backend}] fan-out {i + 1}/{args.runs} (seeded {len(per_user)} users, "
              f"{n_devices} devices in {r['seeded_s']:.1f}s): {r['per_second']:,.0f} devices/s, "
              f"{r['seconds']:.3f}s, POST max {r['post_ms']:.0f} ms ({len(r['posts_ms'])} "
              f"POSTs), first push {r['first_push_ms']:.0f} ms, server CPU "
              f"{r['server_cpu_s']:.2f}s, max RSS {r['max_rss_mb']:.0f} MB, lost {r['lost']}, "
              f"duplicates {r['duplicates']}, load {r['load_1m']:.1f}"
              + (f", registrations p50/p99/max {r['register_p50_ms']}/{r['register_p99_ms']}/"
                 f"{r['register_max_ms']} ms ({r['registrations']})" if args.register_rate else "")
              + f" {'; '.join(r['problems'])}", file=sys.stderr)
        if args.json:
            print(json.dumps(run_line(backend, version, len(per_user), n_devices, r)),
                  flush=True)
    profile = statements = None
    if args.py_spy:
        r = fresh_fanout("py-spy", backend, databases, None, mock, per_user, args,
                         work, "pyspy")
        profile = {"file": r["profile"], "per_second": r["per_second"],
                   "server_cpu_s": r["server_cpu_s"], "problems": r["problems"]}
        print(f"[{backend}] under py-spy: {r['per_second']:,.0f} devices/s -> {r['profile']}",
              file=sys.stderr)
    if args.statements:
        r = fresh_fanout("statements", backend, databases, None, mock,
                         per_user, args, work, "statements")
        statements = {"per_second": r["per_second"], "seconds": r["seconds"],
                      "server_cpu_s": r["server_cpu_s"], "problems": r["problems"],
                      "statements": r["statements"]}
        print(f"[{backend}] statements timed: {r['per_second']:,.0f} devices/s", file=sys.stderr)
    if args.waits:
        r = fresh_fanout("waits", backend, databases, None, mock, per_user, args, work, "waits")
        print(f"[{backend}] waits probed: {r['per_second']:,.0f} devices/s, registrations "
              f"p50/p99/max {r.get('register_p50_ms')}/{r.get('register_p99_ms')}/"
              f"{r.get('register_max_ms')} ms (client), POSTs {r['posts_ms']} ms\n"
              f"{profiling.waits_table(r['waits'], r['wall0_ms'] / 1000)}", file=sys.stderr)
        if args.waits_json:
            with open(args.waits_json, "w") as f:
                json.dump({"wall0_ms": r["wall0_ms"], "posts_ms": r["posts_ms"],
                           "records": r["waits"]}, f)
    if args.stalls:
        r = fresh_fanout("stalls", backend, databases, None, mock, per_user, args, work, "stalls")
        stalls = [s for s in r["stalls"] if s["at"] * 1000 >= r["wall0_ms"]]
        print(f"[{backend}] stall probe (asyncio's loop): {r['per_second']:,.0f} devices/s, "
              f"registrations p99 {r.get('register_p99_ms')} ms; {len(stalls)} turns of "
              f"{profiling.PROBE_STALL_MS:.0f} ms or more:\n{profiling.stalls_table(stalls)}",
              file=sys.stderr)
    if not runs:  # --runs 0: the probes only
        return None
    result = summarize(backend, version, len(per_user), n_devices, pool_runs, runs, profile)
    result["statements"] = statements
    result["unread_per_user"] = args.unread
    if statements:
        result["problems"] += statements["problems"]
    return result


def run_line(backend: str, version: str, n_users: int, n_devices: int, run: dict) -> dict:
    """One run, as --json prints it."""
    return {
        "backend": backend, "devices": n_devices, "seconds": round(run["seconds"], 3),
        "devices_per_second": round(run["per_second"], 1), "post_ms": round(run["post_ms"], 1),
        "max_rss_mb": run["max_rss_mb"], "lost": run["lost"], "duplicates": run["duplicates"],
        "users": n_users, "posts_ms": run["posts_ms"],
        "first_push_ms": round(run["first_push_ms"], 1),
        "server_cpu_s": round(run["server_cpu_s"], 2),
        "loop_thread_cpu_s": round(run["loop_thread_cpu_s"], 2),
        "db_cpu_s": None if run["db_cpu_s"] is None else round(run["db_cpu_s"], 2),
        "mock_cpu_s": round(run["mock_cpu_s"], 2), "written_mb": run["written_mb"],
        "seeded_s": round(run["seeded_s"], 1), "load_1m": round(run["load_1m"], 2),
        "code": version, "problems": run["problems"],
        **{key: run[key] for key in REGISTER_FIGURES if key in run},
    }


# --register-rate: what the JSON line of a run says of its registrations.
REGISTER_FIGURES = ("registrations", "register_p50_ms", "register_p99_ms", "register_max_ms")


def summarize(backend, version, n_users, n_devices, pool_runs, runs, profile) -> dict:
    median = statistics.median_low(r["per_second"] for r in runs)
    chosen = next(r for r in runs if r["per_second"] == median)
    if pool_runs:
        pool_median = statistics.median_low(r["per_second"] for r in pool_runs)
        pool_chosen = next(r for r in pool_runs if r["per_second"] == pool_median)
    else:  # --no-pool
        pool_median, pool_chosen = 0, {"cpu_seconds_in_window": 0, "mock": None}
    problems = [p for r in pool_runs + runs for p in r["problems"]]
    return {
        "backend": backend, "code": version, "users": n_users, "devices": n_devices,
        "per_second": round(median, 1), "seconds": round(chosen["seconds"], 4),
        "post_ms": round(chosen["post_ms"], 1), "first_push_ms": round(chosen["first_push_ms"], 1),
        "last_push_ms": round(chosen["last_push_ms"], 1),
        "db_last_end_ms": chosen["db_last_end_ms"],
        "server_cpu_s": round(chosen["server_cpu_s"], 2),
        "loop_thread_cpu_s": round(chosen["loop_thread_cpu_s"], 2),
        "other_threads_cpu_s": round(chosen["other_threads_cpu_s"], 2),
        "db_cpu_s": None if chosen["db_cpu_s"] is None else round(chosen["db_cpu_s"], 2),
        "mock_cpu_s": round(chosen["mock_cpu_s"], 2), "written_mb": chosen["written_mb"],
        "pool_per_second": pool_median, "pool_cpu_s": pool_chosen["cpu_seconds_in_window"],
        "pool_mock": pool_chosen["mock"],
        "ratio": round(median / pool_median, 3) if pool_runs else None,
        "goal_met": bool(pool_runs) and median >= 0.5 * pool_median,
        "max_rss_mb": max(r["max_rss_mb"] for r in runs),
        "lost": max(r["lost"] for r in runs), "duplicates": max(r["duplicates"] for r in runs),
        "mock": chosen["mock"], "pushes": chosen["pushes"], "deliveries": chosen["deliveries"],
        "all_per_second": [round(r["per_second"], 1) for r in runs],
        "all_post_ms": [round(r["post_ms"], 1) for r in runs],
        "all_first_push_ms": [round(r["first_push_ms"], 1) for r in runs],
        "all_server_cpu_s": [round(r["server_cpu_s"], 2) for r in runs],
        "all_pool_per_second": [r["per_second"] for r in pool_runs],
        "pools_alone": [r["pools"] for r in pool_runs if "pools" in r],  # --android-share
        "load_1m": [round(r["load_1m"], 2) for r in runs],
        "problems": problems, "profile": profile,
    }


def print_report(results: list[dict], args) -> None:
    for r in results:
        print(f"code ({r['backend']}): {r['code']}; {r['users']:,} users, {r['devices']:,} devices, "
              f"{r['unread_per_user']:,} unread notifications each beforehand")
    print()
    print("| backend | devices/s end-to-end | end-to-end s | POST ms | first push ms | "
          "last push answered ms | server CPU s (loop + other threads) | DB CPU s | "
          "pool alone /s (CPU s) | ratio | goal ≥ 0.5 | checks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in results:
        db_cpu = "in process" if r["db_cpu_s"] is None else f"{r['db_cpu_s']:.2f}"
        checks = "✓" if not r["problems"] else f"{len(r['problems'])} problems"
        print(f"| {r['backend']} | {r['per_second']:,.0f} | {r['seconds']:.3f} | "
              f"{r['post_ms']:.0f} | "
              f"{r['first_push_ms']:.0f} | {r['last_push_ms']:.0f} | {r['server_cpu_s']:.2f} "
              f"({r['loop_thread_cpu_s']:.2f} + {r['other_threads_cpu_s']:.2f}) | "
              f"{db_cpu} | {r['pool_per_second']:,.0f} ({r['pool_cpu_s']:.2f}) | "
              f"{'-' if r['ratio'] is None else format(r['ratio'], '.2f')} | "
              f"{'yes' if r['goal_met'] else 'no'} | {checks} |")
    print()
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "statements"}))
    for r in results:
        if r["statements"]:
            st = r["statements"]
            print(f"\n## Database calls, {r['backend']} (one extra fan-out on a server whose "
                  f"calls are timed: {st['per_second']:,.0f} devices/s, server CPU "
                  f"{st['server_cpu_s']:.2f} s)\n")
            print(profiling.statements_table(st["statements"]))
    for r in results:
        for problem in r["problems"]:
            print(f"!!! {r['backend']}: {problem}", file=sys.stderr)
    if args.py_spy:
        for r in results:
            if r["profile"]:
                print(f"\n## py-spy, {r['backend']} ({r['profile']['per_second']:,.0f} devices/s "
                      f"under the profiler)\n")
                print(profiling.summarize_profile(r["profile"]["file"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "3")),
                        help="timed runs of each kind; the median is reported "
                             "(default 3, or $RUNS)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--devices", type=int, metavar="N",
                        help="N devices in all (users of 1-3 devices, or --devices-per-user, "
                             "until N; --users is ignored), seeded in bulk (COPY / executemany) "
                             "once per backend and copied for each run")
    parser.add_argument("--post-users", type=int, default=50_000, metavar="U",
                        help="users per POST /v1/notifications (default 50,000, the most one "
                             "request takes); the POSTs go one after the other")
    parser.add_argument("--seed-cache", metavar="DIR",
                        help="with --devices, keep the seeded SQLite files in DIR for later "
                             "invocations (PostgreSQL's seed lives as long as its cluster)")
    parser.add_argument("--no-pool", action="store_true",
                        help="skip the pool-alone runs (no ratio)")
    parser.add_argument("--rich", action="store_true",
                        help="requests with every push option (issue 14's rich content)")
    parser.add_argument("--idempotency-key", action="store_true",
                        help="each request with an Idempotency-Key of its own")
    parser.add_argument("--android-share", type=float, default=0.0, metavar="S",
                        help="that share of the devices (0-1) Android, sent through the fast "
                             "mock FCM (benchmarks/mock_fcm.js) beside the APNs mock; the pool "
                             "alone is then the slower of APNs' and FCM's, each on its share "
                             "(benchmarks/android_share.py)")
    parser.add_argument("--json", action="store_true",
                        help="stdout: one JSON line per fan-out run (backend, devices, seconds, "
                             "devices_per_second, post_ms, max_rss_mb, lost, duplicates, ...); "
                             "the report goes to stderr")
    parser.add_argument("--seed", type=int, default=1, help="seeds the 1-3 devices per user")
    parser.add_argument("--devices-per-user", type=int, metavar="K",
                        help="every user has K devices (default: 1-3, seeded); with --users, "
                             "how many devices share a recipient's inbox")
    parser.add_argument("--unread", type=int, default=0, metavar="N",
                        help="every recipient has N unread notifications beforehand (default 0)")
    parser.add_argument("--connections", type=int, default=4,
                        help="APNS_CONNECTIONS of the server and of the pool alone (default 4)")
    parser.add_argument("--poll-ms", type=float, default=20, help="poll interval (default 20)")
    parser.add_argument("--run-timeout", type=float, default=300,
                        help="seconds per fan-out (at least 1 s per 400 devices)")
    parser.add_argument("--harness", default=harness.APNS_HARNESS,
                        help="the APNs harness folder with mock_apns.js and its keys")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="profile the server during one extra fan-out per backend into DIR")
    parser.add_argument("--py-spy-rate", type=int, default=500, help="samples/s (default 500)")
    parser.add_argument("--py-spy-flags", default="--gil --nonblocking",
                        help="py-spy record flags (default '--gil --nonblocking': only samples of "
                             "the thread holding the GIL, since py-spy counts aiosqlite's waiting "
                             "threads as busy; SQLite's own C work releases the GIL, see "
                             "--statements for it)")
    parser.add_argument("--statements", action="store_true",
                        help="time the server's database calls by statement in one extra fan-out")
    parser.add_argument("--register-rate", type=float, default=0, metavar="R",
                        help="a new device registered through the API R times a second from "
                             "the first POST to the end of each fan-out (one user's, not a "
                             "recipient); its p50/p99/max in the JSON line")
    parser.add_argument("--waits", action="store_true",
                        help="+ one extra fan-out per backend on a server whose registrations' "
                             "waits (store call, writer turn or pool connection) and event-loop "
                             "lag are timed (profiling.py's wait probe); a table on stderr")
    parser.add_argument("--waits-json", metavar="FILE",
                        help="with --waits: the probe's every record (kind -> [time, ms]) and the "
                             "run's start (wall0_ms) and POSTs into FILE, for a timeline")
    parser.add_argument("--stalls", action="store_true",
                        help="+ one extra fan-out per backend on asyncio's loop with the stall "
                             "probe (every turn of 20 ms or more, by where it ended)")
    parser.add_argument("--time-limit", type=int, default=1800,
                        help="abort after this many seconds")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.android_share and (args.devices or not 0 < args.android_share <= 1):
        sys.exit("--android-share takes a share in (0, 1], without --devices")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.py_spy:
        profiling.py_spy_command()
        os.makedirs(args.py_spy, exist_ok=True)
        args.py_spy = os.path.abspath(args.py_spy)
    harness.stop_on_signals(args.time_limit)
    if args.devices:
        per_user = plan_devices(args.devices, args.seed, args.devices_per_user)
    else:
        per_user = plan(args.users, args.seed, args.devices_per_user)
    results = []
    with tempfile.TemporaryDirectory(prefix="owlfanout-") as work, harness.bench_lock(), \
            harness.MockAPNs(os.path.join(work, "mock.log"), args.harness) as mock, \
            android_share.fcm_mock(args.android_share) as args.fcm:
        if not args.no_pool:
            warm_up(mock, sum(per_user), args.connections)
        for backend in backends:
            if backend == "sqlite":
                databases = bulk_seed.SeededSQLite(work, args.seed_cache)
                results.append(bench_backend(backend, databases, None, mock, per_user,
                                             args, work))
            else:
                with harness.postgres_cluster() as (cluster, postmaster):
                    databases = bulk_seed.SeededPostgres(cluster)
                    results.append(bench_backend(backend, databases, postmaster, mock,
                                                 per_user, args, work))
    signal.alarm(0)
    results = [r for r in results if r is not None]
    if not results:
        return 0
    # --json: stdout holds the runs' lines only (printed as they ended); the report goes to stderr.
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        print_report(results, args)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    harness.run_main(main)
