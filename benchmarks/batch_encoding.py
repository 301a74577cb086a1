#!/usr/bin/env python3
"""What a batch costs to send to PostgreSQL: one array per column (`array_sql`) against the
packed forms (`owlmetry.store.packed_batch`), for the fan-out's biggest batch, the answers'
write (`record_answers`: a push row per device, an end row per delivery).

    python benchmarks/batch_encoding.py [--pushes 1800] [--ends 900] [--writes 200] [--rounds 2]

A throwaway cluster; rows shaped as a fan-out's (ids that vary, one time, owner and outcome for
all, 1-3 devices a delivery); each round times --writes statements per form, alternated: the
same SELECT over the batch (`count(*)`, nothing written, so only the batch's travel is timed).
Printed per form: this process's CPU per write (building the parameters, asyncpg encoding
them) and the wall time per write less that CPU (mostly the server unpacking the batch).
Holds /tmp/owl-bench.lock.
"""

import argparse
import asyncio
import random
import time
import uuid

import asyncpg

import harness
from owlmetry.store.deliveries import END_TYPES, PUSH_TYPES
from owlmetry.store.packed_batch import array_columns, array_sql, packed_batch

T0 = 1_764_800_000_000


def fanout_rows(pushes: int, ends: int) -> tuple[list[tuple], list[tuple]]:
    ids = [f"{T0:x}{random.getrandbits(64):016x}" for _ in range(ends)]
    push_rows = [(ids[i % ends], str(uuid.uuid4()), "mobile_push", "delivered", 200, None, T0,
                  str(uuid.uuid4()), T0 - random.randint(0, 999)) for i in range(pushes)]
    end_rows = [(notification_id, "mobile_push", "sent", None, T0, "owner", T0,
                 random.randint(1, 3), 0, 0, 0) for notification_id in ids]
    return push_rows, end_rows


def as_arrays(types, rows, first):
    return array_sql(types, first), array_columns(rows, len(types))


async def time_form(conn, form, push_rows, end_rows, writes: int) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(writes):
        for types, rows in ((PUSH_TYPES, push_rows), (END_TYPES, end_rows)):
            sql, params = form(types, rows, 1)
            (count,), = await conn.fetch(f"SELECT count(*) FROM ({sql}) AS batch", *params)
            assert count == len(rows)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / writes * 1000, (wall - cpu) / writes * 1000


async def measure(url: str, args) -> None:
    push_rows, end_rows = fanout_rows(args.pushes, args.ends)
    conn = await asyncpg.connect(url)
    try:
        forms = {"arrays": as_arrays, "packed": packed_batch}
        for form in forms.values():  # prepared, warm
            await time_form(conn, form, push_rows, end_rows, 5)
        print(f"{args.pushes} pushes + {args.ends} ends a write, {args.writes} writes a round")
        for round_ in range(args.rounds):
            for name, form in forms.items():
                cpu_ms, rest_ms = await time_form(conn, form, push_rows, end_rows, args.writes)
                print(f"round {round_ + 1} {name}: client CPU {cpu_ms:.2f} ms a write, "
                      f"the rest of its wall time {rest_ms:.2f} ms")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=1800)
    parser.add_argument("--ends", type=int, default=900)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with harness.bench_lock(), harness.postgres_cluster() as (cluster, _):
        asyncio.run(measure(cluster.url, args))
    print(f"code {harness.code_version()}")


if __name__ == "__main__":
    main()
