#!/usr/bin/env python3
"""Crash-proof at scale: a fan-out to 100,000 devices while the server is killed with SIGKILL at
20 random moments and started again each time; at the end every device must have exactly one
final answer on record, none may be lost, and the mock's receipts may show a device twice only
if its push was at risk at a kill (sent, its answer not yet on record).

    python benchmarks/crash_fanout.py [--backend sqlite|postgresql|both] [--devices 100000]
        [--kills 20] [--seed 1] [--lease 5] [--latency-ms 10] [--json]

The mock APNs is the project's own (`owlmetry.apns.mock`), served from this script's event loop
on core 1, answering after --latency-ms: its per-token counters are the receipt log (`requests`: every push it was sent,
`delivered`: every one it accepted). `owlmetry serve` runs pinned to core 0 with
NOTIFY_LEASE_SECONDS=--lease (the time a restarted server waits for the killed one's claims).
Per backend, on a fresh database (SQLite: a file in a temp folder; PostgreSQL: a database in a
throwaway cluster with default durable settings): --devices devices, two per user, and a
server API key, seeded through the store (not timed). Then the server starts, and one
notification to every user is POSTed in requests of 50,000 users. The kill moments are --kills
random fractions of the devices (seeded): when the mock has answered that many pushes, the
server is killed (SIGKILL); right after, the script reads what was at risk -- the tokens the mock
was sent minus the devices with an answer on record -- and how many streams were open at the
mock, and starts the server again. Once no delivery is pending the server is stopped (SIGTERM)
and the checks run:

- every device has exactly one row in notification_pushes, and it is `delivered`; every
  delivery is `sent`;
- nothing lost: the mock accepted every token at least once;
- every token the mock was sent more than once was at risk at some kill, and was sent at most
  once more than the number of kills it was at risk at;
- no kill found more pushes at risk than a dispatcher holds at once (its `max_in_flight`).

Prints one JSON line per backend (--json) or a short report: devices, kills, seconds from the
POST to the last outcome (kills and restarts included; timings are context, this checks
correctness), duplicates, the pushes at risk and the streams open at each kill. Exit status 1
when a check fails. Holds /tmp/owl-bench.lock (flock) while it runs.
"""

import argparse
import asyncio
import inspect
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter

import aiohttp
import asyncpg
import orjson

import harness
from owlmetry.apns.mock import MockAPNs, MockBehaviour
from owlmetry.clock import now_ms
from owlmetry.credentials import create_api_key
from owlmetry.ids import new_id
from owlmetry.notify.dispatcher import Dispatcher
from owlmetry.store import DeviceRegistration, open_store

POST_CHUNK = 50_000  # users per POST /v1/notifications
DEVICES_PER_USER = 2
# What a kill can put at risk: the devices of the deliveries the dispatcher holds (it claims no
# more while this many are sent to, and holds each until its end is on record).
IN_FLIGHT_LIMIT = inspect.signature(Dispatcher).parameters["max_in_flight"].default
SAFETY_S = 1800  # a net under every wait

INSERT_USERS = """
WITH batch (id, email, created_at) AS ({batch})
INSERT INTO users (id, email, created_at) SELECT id, email, created_at FROM batch
"""
PENDING = """
SELECT count(*) FROM (
    SELECT 1 FROM notification_deliveries WHERE status = 'pending' LIMIT 1) AS any_pending
"""
ANSWERED_TOKENS = """
SELECT d.token FROM notification_pushes AS p JOIN user_devices AS d ON d.id = p.device_id
"""
PUSHES_PER_DEVICE = """
SELECT d.token, count(p.device_id), min(p.outcome)
FROM user_devices AS d LEFT JOIN notification_pushes AS p ON p.device_id = d.id
GROUP BY d.token
"""
DELIVERIES = "SELECT status, count(*) FROM notification_deliveries GROUP BY status"


# ---- seeding ------------------------------------------------------------------------------

async def seed(url: str, devices: int) -> tuple[list[str], list[str], str]:
    """Users with two production devices each (one for an odd last), and a server API key;
    (user ids, tokens, the key's secret)."""
    store = await open_store(url)
    try:
        await store.migrate()
        now = now_ms()
        run = secrets.token_hex(3)
        n_users = (devices + DEVICES_PER_USER - 1) // DEVICES_PER_USER
        users = [(new_id(), f"crash{i}-{run}@bench.example", now) for i in range(n_users)]
        for start in range(0, n_users, 10_000):
            await store.execute_batch(INSERT_USERS, ("text", "text", "bigint"),
                                      users[start:start + 10_000])
        tokens = [harness.apns_token(i) for i in range(devices)]
        registrations = [store.register_device(
            new_id(), users[i // DEVICES_PER_USER][0],
            DeviceRegistration("ios_push", token, "production", "1.0", "iPhone15,3", "iOS 18.2"),
            now) for i, token in enumerate(tokens)]
        for start in range(0, len(registrations), 10_000):
            await asyncio.gather(*registrations[start:start + 10_000])
        _, secret = await create_api_key(store, new_id(), "server", "crash_fanout", now)
        return [user_id for user_id, _, _ in users], tokens, secret
    finally:
        await store.close()


# ---- the server ---------------------------------------------------------------------------

class Server:
    """`owlmetry serve` on core 0, killed and started again on the same port."""

    def __init__(self, database: str, env: dict, log_path: str):
        self.database, self.env, self.log_path = database, env, log_path
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = await asyncio.create_subprocess_exec(
                "taskset", "-c", harness.SERVER_CORE, sys.executable, "-m", "owlmetry", "serve",
                "--port", str(self.port), "--database", self.database, env=self.env,
                stdout=log, stderr=log, start_new_session=True, cwd=harness.REPO)
        self.starts += 1
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"server exited (see {self.log_path})")
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy (see {self.log_path})")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                await self.kill()


def server_env(mock: MockAPNs, lease_s: int) -> dict:
    url = f"https://127.0.0.1:{mock.port}"
    env = dict(os.environ, APNS_KEY_ID=harness.KEY_ID, APNS_TEAM_ID=harness.TEAM_ID,
               APNS_BUNDLE_ID=harness.TOPIC,
               APNS_KEY_P8_PATH=os.path.join(harness.APNS_HARNESS, "apns-auth-key.p8"),
               APNS_PRODUCTION_URL=url, APNS_SANDBOX_URL=url,
               APNS_CA_FILE=os.path.join(harness.APNS_HARNESS, "mock-cert.pem"),
               NOTIFY_LEASE_SECONDS=str(lease_s), JWT_SECRET=secrets.token_urlsafe(32))
    for name in ("ACCESS_LOG", "DATABASE_URL", "APNS_KEY_P8", "SECRET_KEY_FILE"):
        env.pop(name, None)
    return env


def start_mock(latency_ms: float) -> MockAPNs:
    folder = harness.APNS_HARNESS
    with open(os.path.join(folder, "apns-auth-key.p8")) as f:
        auth_key = f.read()
    return MockAPNs(os.path.join(folder, "mock-cert.pem"), os.path.join(folder, "mock-key.pem"),
                    auth_key, harness.KEY_ID, harness.TEAM_ID,
                    MockBehaviour(max_streams=harness.STREAMS_PER_CONNECTION,
                                  latency_s=latency_ms / 1000))


# ---- one run ------------------------------------------------------------------------------

async def post_all(server: Server, secret: str, user_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(user_ids), POST_CHUNK):
            body = orjson.dumps({"user_ids": user_ids[start:start + POST_CHUNK], "type": "bench",
                                 "title": "Crash", "body": "one notification to every user"})
            async with session.post(f"{server.url}/v1/notifications", data=body,
                                    headers=headers) as response:
                if response.status != 202:
                    raise RuntimeError(f"POST: {response.status} {await response.text()}")


async def answers(mock: MockAPNs, n: int) -> None:
    """Return once the mock has answered `n` pushes (a sum over a few statuses: cheap to poll,
    unlike the per-token counters)."""
    deadline = time.monotonic() + SAFETY_S
    while sum(mock.stats.responses_by_status.values()) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the mock never saw {n} pushes")
        await asyncio.sleep(0.005)


async def closed(mock: MockAPNs) -> None:
    """Once the killed server's connections are closed at the mock, all it wrote is counted."""
    await asyncio.wait_for(
        asyncio.gather(*(conn.closed for conn in list(mock._connections))), 30)


async def run_backend(backend: str, url: str, args, folder: str) -> dict:
    mock = start_mock(args.latency_ms)
    await mock.start()
    try:
        user_ids, tokens, secret = await seed(url, args.devices)
        store = await open_store(url)
        server = Server(url, server_env(mock, args.lease),
                        os.path.join(folder, f"server-{backend}.log"))
        rng = random.Random(args.seed)
        moments = sorted(int(rng.uniform(0.02, 0.95) * args.devices) for _ in range(args.kills))
        kills = []
        at_risk: Counter = Counter()  # token -> kills it was at risk at
        before: Counter = Counter()  # the mock's requests at the previous kill
        unanswered = 0  # streams the mock never answered (cut by the kills so far)
        try:
            await server.start()
            t0 = time.monotonic()
            await post_all(server, secret, user_ids)
            for moment in moments:
                # Each kill finds its server sending: past the moment, and at least one answer
                # past what its predecessor got (answers to a killed server still count).
                await answers(mock, max(moment,
                                        sum(mock.stats.responses_by_status.values()) + 1))
                streams_open = (sum(mock.stats.requests.values())
                                - sum(mock.stats.responses_by_status.values()) - unanswered)
                await server.kill()
                await closed(mock)
                unanswered = (sum(mock.stats.requests.values())
                              - sum(mock.stats.responses_by_status.values()))
                answered = {row[0] for row in await store.execute(ANSWERED_TOKENS)}
                # Sent by the process just killed, and not on record: what its successor
                # sends again.
                now_sent = Counter(mock.stats.requests)
                risky = {t for t, n in now_sent.items() if n > before[t]} - answered
                before = now_sent
                at_risk.update(risky)
                kills.append({"after_pushes": moment, "streams_open": streams_open,
                              "at_risk": len(risky)})
                print(f"{backend}: kill {len(kills)} after {moment} pushes: {streams_open} "
                      f"streams open, {len(risky)} pushes at risk", file=sys.stderr)
                await server.start()
            deadline = time.monotonic() + SAFETY_S
            while (await store.execute(PENDING))[0][0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("deliveries still pending")
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - t0
            await server.stop()
            result = check(backend, tokens, mock, at_risk, kills,
                           await store.execute(PUSHES_PER_DEVICE),
                           dict(await store.execute(DELIVERIES)), len(user_ids))
            result["seconds"] = round(seconds, 1)
            with open(server.log_path) as log:  # the servers' leases that ran out (`Lease`)
                result["lease_give_ups"] = sum("gave up" in line for line in log)
            return result
        finally:
            await server.stop()
            await store.close()
    finally:
        await mock.stop()


def check(backend: str, tokens: list[str], mock: MockAPNs, at_risk: Counter, kills: list,
          per_device: list, deliveries: dict, users: int) -> dict:
    requests, delivered = mock.stats.requests, mock.stats.delivered
    problems = []
    records = {token: (count, outcome) for token, count, outcome in per_device}
    wrong = [t for t in tokens if records.get(t) != (1, "delivered")]
    if wrong:
        problems.append(f"{len(wrong)} devices without exactly one delivered record "
                        f"(e.g. {wrong[0][:8]}…: {records.get(wrong[0])})")
    if deliveries != {"sent": users}:
        problems.append(f"deliveries {deliveries}, expected {{'sent': {users}}}")
    lost = [t for t in tokens if delivered[t] < 1]
    if lost:
        problems.append(f"{len(lost)} devices never accepted at the mock")
    twice = {t: n for t, n in requests.items() if n > 1}
    unexplained = [t for t, n in twice.items() if n > 1 + at_risk[t]]
    if unexplained:
        problems.append(f"{len(unexplained)} devices sent more often than the kills they were "
                        f"at risk at explain")
    over = [k for k in kills if k["at_risk"] > IN_FLIGHT_LIMIT]
    if over:
        problems.append(f"{len(over)} kills found more pushes at risk than the dispatcher "
                        f"holds at once ({IN_FLIGHT_LIMIT})")
    return {"backend": backend, "devices": len(tokens), "kills": len(kills),
            "duplicates": sum(n - 1 for n in twice.values()), "devices_twice": len(twice),
            "at_risk": sum(k["at_risk"] for k in kills),
            "max_streams_open_at_kill": max((k["streams_open"] for k in kills), default=0),
            "per_kill": kills, "problems": problems}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    # 5 s, not the smallest 2: a lease whose renewals on a loaded machine take longer than its
    # margin runs out by the server's clock (`Lease`), and those sends are in flight twice too.
    ap.add_argument("--lease", type=int, default=5, help="NOTIFY_LEASE_SECONDS of the server")
    ap.add_argument("--latency-ms", type=float, default=10.0,
                    help="the mock's answer latency (streams are in flight that long)")
    ap.add_argument("--json", action="store_true", help="one JSON line per backend")
    return ap.parse_args(argv)


def report(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_kill"}), flush=True)
        return
    print(f"{result['backend']}: {result['devices']} devices, {result['kills']} kills, "
          f"{result['seconds']} s; sent twice: {result['devices_twice']} devices "
          f"({result['at_risk']} pushes at risk over all kills, at most "
          f"{result['max_streams_open_at_kill']} streams open at a kill; leases given up: "
          f"{result['lease_give_ups']} times); "
          f"{'OK' if not result['problems'] else 'PROBLEMS: ' + '; '.join(result['problems'])}")


async def run(args) -> list[dict]:
    results = []
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="crash-fanout-") as folder:
        for backend in backends:
            if backend == "sqlite":
                results.append(await run_backend(
                    backend, f"sqlite:///{folder}/crash.db", args, folder))
            else:
                with harness.postgres_cluster() as (cluster, _):
                    admin = await asyncpg.connect(cluster.url)
                    try:
                        await admin.execute("CREATE DATABASE crash_fanout")
                    finally:
                        await admin.close()
                    results.append(await run_backend(
                        backend, cluster.database_url("crash_fanout"), args, folder))
            report(results[-1], args.json)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    harness.stop_on_signals(4 * 3600)
    with harness.bench_lock(), harness.pinned_self(harness.CLIENT_CORE):
        results = asyncio.run(run(args))
    return 1 if any(result["problems"] for result in results) else 0


if __name__ == "__main__":
    harness.run_main(main)
