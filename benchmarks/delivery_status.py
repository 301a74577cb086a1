#!/usr/bin/env python3
"""The producer's status of a 20,000-device notification, read page by page: milliseconds per
page of GET /v1/notifications/{id}/deliveries (the goal: under 100 ms a page).

    python benchmarks/delivery_status.py [--backend sqlite|postgresql|both] [--devices 20000]
        [--limit 500] [--passes 3]

Per backend, on a fresh database (SQLite: a new file in a temp folder; PostgreSQL: a new
database in a throwaway cluster with its default durable settings): one user with --devices
iOS devices, one notification to them, and every device's answer written through the store's
own write (`save_outcomes`, the dispatcher recorder's, 4,096 a transaction, the delivery's end
with the last): 1% of the tokens dead (the device removed, its audit row written), 1% answered
after a retry, the rest delivered, each with an apns-id. Then a fresh `owlmetry serve` pinned
to core 0 (its own dispatcher finds nothing to do); this script, on core 1, reads the
notification's devices page by page, --limit a page, --passes times over (after one pass not
timed), one request at a time, and times each page from the request to its decoded JSON.
Prints a markdown table (ms per page: p50, p90, max, mean) and one JSON line per backend. The
whole script holds /tmp/owl-bench.lock (flock).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import aiohttp

import harness
from harness import CLIENT_CORE
from owlmetry.clock import now_ms
from owlmetry.ids import new_id
from owlmetry.store import (
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    PushOutcome,
    PushRecord,
    open_store,
)

INSERT_DEVICES = """
WITH batch (id, user_id, token, created_at) AS ({batch})
INSERT INTO user_devices (id, user_id, channel, platform, token, environment, last_seen_at,
                          created_at)
SELECT id, user_id, 'mobile_push', 'ios', token, 'production', created_at, created_at
FROM batch
"""
RECORDER_BATCH = 4096  # owlmetry.notify.recorder.MAX_ROWS


async def seed(url: str, devices: int) -> str:
    """The user, devices, notification and answers; the notification's id."""
    store = await open_store(url)
    try:
        await store.migrate()
        now = now_ms()
        user = await store.create_user(new_id(), f"{uuid.uuid4().hex[:8]}@bench.example", now)
        rows = [(new_id(), user.id, harness.apns_token(i), now) for i in range(devices)]
        for start in range(0, devices, 10_000):
            await store.execute_batch(INSERT_DEVICES, ("text", "text", "text", "bigint"),
                                      rows[start:start + 10_000])
        (notification_id,) = await store.enqueue_notifications(
            [(new_id(), user.id)], NotificationContent("bench.status", "Status"),
            ["mobile_push"], now)
        records, retried = [], []
        for i, (device_id, _, _, _) in enumerate(rows):
            base = PushRecord(notification_id, device_id, "mobile_push", PushOutcome.DELIVERED,
                              200, None, None, "ios", "production", str(uuid.uuid4()), None,
                              now + 5)
            if i % 100 == 1:  # a dead token: removed, audited
                base = PushRecord(notification_id, device_id, "mobile_push",
                                  PushOutcome.REMOVED, 410, "Unregistered", now + 1, "ios",
                                  "production", str(uuid.uuid4()), now + 1, now + 5)
            elif i % 100 == 2:  # answered on the second attempt
                retried.append(PushRecord(notification_id, device_id, "mobile_push",
                                          PushOutcome.RETRY, 503, "ServiceUnavailable", None,
                                          "ios", "production", None, None, now + 5))
            records.append(base)
        for start in range(0, len(retried), RECORDER_BATCH):
            await store.save_outcomes("bench", retried[start:start + RECORDER_BATCH], [],
                                      now + 6)
        # The delivery ends with its last answers, as the recorder writes it (under the
        # lease of a dispatcher that claimed it): the server's own has nothing to claim.
        await store.execute("UPDATE notification_deliveries SET claimed_by = 'bench', "
                            "attempts = 2 WHERE notification_id = $1", notification_id)
        removed = sum(1 for r in records if r.outcome == PushOutcome.REMOVED)
        end = DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.SENT, None, None,
                          (len(records) - removed, removed, 0, 0))
        for start in range(0, len(records), RECORDER_BATCH):
            last = start + RECORDER_BATCH >= len(records)
            await store.save_outcomes("bench", records[start:start + RECORDER_BATCH],
                                      [end] if last else [], now + 10)
        return notification_id
    finally:
        await store.close()


async def read_pages(url: str, key: str, notification_id: str, limit: int, passes: int,
                     devices: int) -> list[float]:
    """Milliseconds per page, every page of every pass."""
    timings = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(passes):
            cursor, seen = None, 0
            while True:
                params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
                started = time.perf_counter()
                async with session.get(f"{url}/v1/notifications/{notification_id}/deliveries",
                                       params=params) as response:
                    body = await response.json()
                timings.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {body}")
                seen += len(body["devices"])
                cursor = body["cursor"]
                if cursor is None:
                    break
            # The removed devices are listed with their audit record: every device, once.
            if seen != devices:
                raise RuntimeError(f"a pass listed {seen} devices, not {devices}")
    return timings


def run_backend(backend: str, database: str, args, work: str) -> dict:
    print(f"{backend}: seeding {args.devices} devices and their answers", file=sys.stderr)
    notification_id = asyncio.run(seed(database, args.devices))
    env = {**os.environ, "DATABASE_URL": database}
    if backend == "postgresql":
        env["SECRET_KEY_FILE"] = os.path.join(work, "secret.key")
    key = harness.owlmetry_cli("keys", "create", "--kind", "server", env=env)
    log = os.path.join(work, f"server-{backend}.log")
    with harness.running_server(database, env, log) as (url, _pid):
        with harness.pinned_self(CLIENT_CORE):
            asyncio.run(read_pages(url, key, notification_id, args.limit, 1, args.devices))
            timings = asyncio.run(read_pages(url, key, notification_id, args.limit,
                                             args.passes, args.devices))
    ordered = sorted(timings)
    return {
        "backend": backend, "devices": args.devices, "limit": args.limit,
        "pages": len(timings), "p50_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 1),
        "max_ms": round(ordered[-1], 1), "mean_ms": round(statistics.fmean(ordered), 1),
        "code": harness.code_version(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="owlstatus-") as work, harness.bench_lock():
        if args.backend in ("sqlite", "both"):
            results.append(run_backend("sqlite", f"sqlite:///{work}/status.db", args, work))
        if args.backend in ("postgresql", "both"):
            with harness.postgres_cluster() as (cluster, _postmaster):
                results.append(run_backend(
                    "postgresql", harness.create_database(cluster, "status"), args, work))
    print("| backend | devices | page | pages read | p50 ms | p90 ms | max ms | mean ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['devices']} | {r['limit']} | {r['pages']} | "
              f"{r['p50_ms']} | {r['p90_ms']} | {r['max_ms']} | {r['mean_ms']} |")
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    harness.run_main(main)
