#!/usr/bin/env python3
"""PostgreSQL's own cost of a fan-out, without APNs: what the database spends per recipient on
the enqueue and per device on the claims, their reads and the answers' writes, and whether
that cost stays flat through the run.

    python benchmarks/queue_cost.py [--users 100000] [--claim 500] [--explain-at 0.5] [--json]
        [--dead-share 0.1]  # that share of the devices answered 410: their devices deleted

A throwaway cluster with PostgreSQL's default durable settings and pg_stat_statements; users
with 1, 2, 3, 1, 2, 3... devices (COPY, `bulk_seed.py`); one notification to all of them
enqueued through the dispatcher's `enqueue` as POSTs of 50,000 users; then two loops, as the
dispatcher runs two, each claiming --claim deliveries through the store and at once recording
every device delivered (or, with --dead-share, removed) and the delivery sent
(`save_outcomes`), until none is left. Printed:
the database's CPU (postmaster and backends, /proc) per recipient of the enqueue and per
device of the fan-out, the store's own CPU in this process (the server's share of
the database work: statements built, parameters encoded, rows decoded) per recipient and per
device, the fan-out's database CPU per delivery for each tenth of it (flat, or growing
with the work done?), the statements by total time, and, at --explain-at of the way, the
plans (EXPLAIN ANALYZE, BUFFERS) of a claim, its targets' read and an answers' write, in a
transaction rolled back. Holds /tmp/owl-bench.lock.
"""

import argparse
import asyncio
import json
import os
import time
import zlib

import bulk_seed
import harness
from owlmetry.clock import now_ms
from owlmetry.notify.dispatcher import enqueue
from owlmetry.preferences import Defaults
from owlmetry.store import (
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    PushOutcome,
    PushRecord,
    TargetKind,
    Targets,
    deliveries,
    open_store,
)

TARGETS = {"mobile_push": Targets(TargetKind.DEVICES, ("ios_push", "mobile_push"))}
POST_USERS = 50_000
LEASE_MS = 30_000
TOP_STATEMENTS = """
SELECT calls, round(total_exec_time::numeric, 1), shared_blks_hit + shared_blks_read,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10
"""


class StatementsCluster(harness.Cluster):
    @property
    def options(self) -> str:
        return (super().options + " -c shared_preload_libraries=pg_stat_statements"
                " -c pg_stat_statements.track=all")


def start_cluster() -> tuple[harness.Cluster, int]:
    cluster = harness.start_cluster(harness.find_bin_dir(), durable=True,
                                    collate=harness.PG_COLLATION)
    cluster.__class__ = StatementsCluster
    cluster.pause()
    cluster.resume()  # with the options above
    with open(os.path.join(cluster.folder, "data", "postmaster.pid")) as f:
        return cluster, int(f.readline())


def is_dead(device_id: str, share: float) -> bool:
    """Whether the bench's APNs calls this device's token dead (a seeded draw per device)."""
    return zlib.crc32(device_id.encode()) % 10_000 < share * 10_000


def answers(claims, now: int, dead_share: float = 0.0
            ) -> tuple[list[PushRecord], list[DeliveryEnd]]:
    """Every device delivered, or (a `dead_share` of them) answered 410: removed."""
    pushes, ends = [], []
    for c in claims:
        removed = 0
        for t in c.targets:
            if dead_share and is_dead(t.device_id, dead_share):
                removed += 1
                pushes.append(PushRecord(c.notification_id, t.device_id, c.channel,
                                         PushOutcome.REMOVED, 410, "Unregistered", None,
                                         t.platform, t.environment, "bench", None, now))
            else:
                pushes.append(PushRecord(c.notification_id, t.device_id, c.channel,
                                         PushOutcome.DELIVERED, 200, None, None, t.platform,
                                         t.environment, "bench", None, now))
        ends.append(DeliveryEnd(c.notification_id, c.channel, DeliveryStatus.SENT, None, None,
                                (len(c.targets) - removed, removed, 0, 0)))
    return pushes, ends


async def explain(store) -> list[str]:
    """The plans of a claim, its targets' read and its answers' write, rolled back."""
    engine, now = store.engine, now_ms()
    claim = deliveries.claim_statement(engine.name, engine.skip_locked)
    plans = []
    async with engine._pool.acquire() as conn:
        undone = conn.transaction()
        await undone.start()
        try:
            async def plan(sql, *params):
                rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
                plans.append("\n".join(row[0][:160] for row in rows))

            await plan(claim, "explain", now, now + LEASE_MS, 500)
            ids = [row[0] for row in await conn.fetch(claim, "explain", now, now + LEASE_MS,
                                                      500)]
            targets = deliveries.targets_statement(engine.name, TargetKind.DEVICES, False)
            channels = list(TARGETS["mobile_push"].device_channels)
            served = engine.batch_args([(channel,) for channel in channels], 1)
            read = engine.batch_call(targets, ("text",), [(i,) for i in ids], tuple(served))
            await plan(*read)
            pushes = [PushRecord(row[0], row[1], "mobile_push", PushOutcome.DELIVERED, 200, None)
                      for row in await conn.fetch(*read)]
            ends = [DeliveryEnd(i, "mobile_push", DeliveryStatus.SENT, None, None, (1, 0, 0, 0))
                    for i in ids]
            await plan(*deliveries.record_answers_call(engine, "explain", pushes, ends, now))
        finally:
            await undone.rollback()
    return plans


async def measure(url: str, postmaster: int, args) -> dict:
    store = await open_store(url)
    try:
        await store.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await store.execute("SELECT pg_stat_statements_reset()")
        users = [user_id for (user_id,) in await store.execute("SELECT id FROM users")]
        content = NotificationContent("bench", "Queue cost", "one notification to every user")
        cpu0, t0 = harness.tree_cpu_seconds(postmaster), time.perf_counter()
        own0 = time.process_time()
        ids = []
        for start in range(0, len(users), POST_USERS):
            ids += await enqueue(store, users[start:start + POST_USERS], content,
                                 ["mobile_push"], Defaults())
        result = {"recipients": len(ids), "enqueue_s": round(time.perf_counter() - t0, 2)}
        result["enqueue_db_us_per_recipient"] = round(
            (harness.tree_cpu_seconds(postmaster) - cpu0) / len(ids) * 1e6, 1)
        result["enqueue_store_us_per_recipient"] = round(
            (time.process_time() - own0) / len(ids) * 1e6, 1)

        done, devices, tenths, plans = 0, 0, [], []
        mark = [harness.tree_cpu_seconds(postmaster), 0]
        cpu0, t0, own0 = mark[0], time.perf_counter(), time.process_time()

        async def claim_loop() -> None:
            nonlocal done, devices
            while claims := await store.claim_deliveries(
                    "queue-cost", now_ms(), LEASE_MS, args.claim, None, TARGETS):
                pushes, ends = answers(claims, now_ms(), args.dead_share)
                await store.save_outcomes("queue-cost", pushes, ends, now_ms())
                done, devices = done + len(claims), devices + len(pushes)
                if done - mark[1] >= len(ids) / 10:
                    cpu = harness.tree_cpu_seconds(postmaster)
                    tenths.append(round((cpu - mark[0]) / (done - mark[1]) * 1e6))
                    mark[:] = [cpu, done]
                if not plans and args.explain_at and done >= len(ids) * args.explain_at:
                    plans.append(None)
                    plans[:] = await explain(store)

        await asyncio.gather(claim_loop(), claim_loop())
        cpu = harness.tree_cpu_seconds(postmaster) - cpu0
        own = time.process_time() - own0
        result.update(fanout_store_us_per_device=round(own / devices * 1e6, 1),
                      devices=devices, fanout_s=round(time.perf_counter() - t0, 2),
                      fanout_db_us_per_device=round(cpu / devices * 1e6, 1),
                      db_us_per_delivery_by_tenth=tenths,
                      statements=[list(map(str, row)) for row in
                                  await store.execute(TOP_STATEMENTS)],
                      plans=plans)
        return result
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--claim", type=int, default=500, help="deliveries per claim")
    parser.add_argument("--explain-at", type=float, default=0.5,
                        help="share of the deliveries done when the plans are taken (0: none)")
    parser.add_argument("--dead-share", type=float, default=0.0,
                        help="share of the devices answered 410 (removed) instead of delivered")
    parser.add_argument("--json", action="store_true", help="one JSON line only")
    args = parser.parse_args()
    with harness.bench_lock():
        cluster, postmaster = start_cluster()
        try:
            url = harness.create_database(cluster, "queue_cost")
            asyncio.run(bulk_seed.seed_postgres(url, [1 + i % 3 for i in range(args.users)]))
            result = asyncio.run(measure(url, postmaster, args))
        finally:
            cluster.stop()
    result.update(code=harness.code_version(), load_1m=os.getloadavg()[0])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "plans"}))
        return
    for plan in result.pop("plans"):
        print(plan, end="\n\n")
    for row in result.pop("statements"):
        print(" | ".join(row))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
