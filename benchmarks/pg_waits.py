#!/usr/bin/env python3
"""Where PostgreSQL's backends spend a benchmark's time: wait events sampled by statement kind.

    python benchmarks/fanout.py --devices 200000 --backend postgresql ... --register-rate 50 &
    python benchmarks/pg_waits.py --benchmark $! [--seconds 400] [--interval-ms 5]

It waits until the benchmark (its pid) holds /tmp/owl-bench.lock (/proc/locks), then for the
first PostgreSQL cluster started after that (the benchmark's throwaway one, found by `ps`;
another engineer's cluster started while the benchmark queued for the lock is not it), then
samples `pg_stat_activity` every
--interval-ms until the cluster goes away or --seconds pass: each active client backend's
wait event (CPU when none) under its statement's kind (a registration, the answers' write, an
enqueue chunk, a claim...), and the background processes' (checkpointer, WAL writer) when they
wait on something other than their idle loop. Printed: per kind, how many samples found it
active, their mean per sample, and its six commonest waits. A kind's samples times the interval
over its statement count is its mean time in the database, by what it waited for. Takes no
lock: it runs beside a benchmark that holds /tmp/owl-bench.lock, and costs a few % of a core.
"""

import argparse
import asyncio
import os
import re
import subprocess
import time
from collections import Counter, defaultdict

import asyncpg

KINDS = (  # the first fragment found in a statement names its kind
    ("INSERT INTO user_devices", "registration"),
    ("INSERT INTO notification_pushes", "answers"),
    ("SET claimed_by", "claim"),
    ("INSERT INTO notifications", "enqueue"),
    ("available_at = b.until", "lease renewal"),
    ("user_devices AS t", "claim's targets"),
    ("COALESCE((SELECT c.unread", "claim's notifications"),
)
ACTIVE = """
SELECT query, wait_event_type, wait_event FROM pg_stat_activity
WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"""
LOCK = "/tmp/owl-bench.lock"
BACKGROUND = """
SELECT backend_type, wait_event_type, wait_event FROM pg_stat_activity
WHERE backend_type <> 'client backend' AND wait_event_type IS DISTINCT FROM 'Activity'"""


def kind(query: str) -> str:
    for fragment, name in KINDS:
        if fragment in query:
            return name
    return " ".join(query.split())[:40]


def holds_lock(pid: int) -> bool:
    """Whether `pid` holds the benchmarks' lock (a holder's line in /proc/locks has no "->")."""
    inode = os.stat(LOCK).st_ino
    with open("/proc/locks") as f:
        return any(fields[4] == str(pid) and fields[5].endswith(f":{inode}")
                   for fields in map(str.split, f) if fields[1] == "FLOCK")


def clusters_since(start: float) -> list[str]:
    """Ports of the PostgreSQL servers started after `start`."""
    out = subprocess.run(["ps", "-eo", "etimes,args"], capture_output=True, text=True).stdout
    age = time.time() - start
    return [port for elapsed, port in re.findall(r"(\d+) \S*bin/postgres -D \S+ -p (\d+)", out)
            if int(elapsed) <= age + 1]


async def sample(benchmark: int, seconds: float, interval_s: float) -> tuple[int, float, dict]:
    while not holds_lock(benchmark):
        if not os.path.exists(f"/proc/{benchmark}"):
            return 0, 0.0, {}
        await asyncio.sleep(0.1)
    start = time.time()
    while not (ports := clusters_since(start)):
        if time.time() - start > seconds:
            return 0, 0.0, {}
        await asyncio.sleep(0.2)
    while True:
        try:
            conn = await asyncpg.connect(f"postgresql://owlmetry@127.0.0.1:{ports[-1]}/postgres")
            break
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.2)  # still starting
    waits: dict[str, Counter] = defaultdict(Counter)
    samples, began = 0, time.time()
    try:
        while time.time() - start < seconds:
            for row in await conn.fetch(ACTIVE):
                waits[kind(row[0])][f"{row[1] or 'CPU'}:{row[2] or ''}"] += 1
            for row in await conn.fetch(BACKGROUND):
                waits[f"({row[0]})"][f"{row[1] or 'CPU'}:{row[2] or ''}"] += 1
            samples += 1
            await asyncio.sleep(interval_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pass  # the benchmark stopped its cluster: the run is over
    finally:
        if not conn.is_closed():
            await conn.close()
    return samples, time.time() - began, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=int, required=True, help="the benchmark's pid")
    parser.add_argument("--seconds", type=float, default=400, help="the most to sample")
    parser.add_argument("--interval-ms", type=float, default=5)
    args = parser.parse_args()
    samples, took, waits = asyncio.run(sample(args.benchmark, args.seconds, args.interval_ms / 1000))
    print(f"{samples} samples in {took:.0f} s (one every {took / max(samples, 1) * 1000:.1f} ms)")
    print("| kind | active samples | mean active | commonest waits |\n|---|---:|---:|---|")
    for name, counts in sorted(waits.items(), key=lambda item: -item[1].total()):
        common = ", ".join(f"{wait} {n}" for wait, n in counts.most_common(6))
        print(f"| {name} | {counts.total()} | {counts.total() / samples:.2f} | {common} |")


if __name__ == "__main__":
    main()
