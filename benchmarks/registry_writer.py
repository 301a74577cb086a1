"""SQLite's registry writer alone: new tokens straight into the Store, without HTTP.

What `registry.py`'s register_new costs the database at a size, apart from the server around
it: per size (a fresh database, or a copy of registry.py's cached seed of N devices) it opens
the Store, creates 100 users, fills each to the device cap (100), then registers --tokens new
tokens from --concurrency tasks (so about that many a transaction: the writer takes a batch of
what is waiting), each evicting its user's least recently seen device, as the benchmark's
writers do. The process is pinned to one core, as the server is. Per token it prints the CPU
of the event loop's thread, of the writer connection's thread and of the checkpointer's
(µs, of it in the kernel), and the bytes and write calls each thread made.

`--wal-pages` stops the checkpoints for the timed part and reads the WAL afterwards: frames
per token and per transaction, and per b-tree (dbstat: table or index, leaf or interior) the
frames written per token and the distinct pages among them (what a checkpoint copies).

`--rounds` alternates the sizes (ABBA), each round's sizes neighbours in time; it holds
/tmp/owl-bench.lock throughout (a few minutes), as every benchmark of the machine does.

    python benchmarks/registry_writer.py [--seed-devices 0 1000000]
        [--seed-cache /tmp/owl-sqlitemix-seeds] [--tokens 20000] [--concurrency 24]
        [--rounds 2] [--wal-pages]
"""

import argparse
import asyncio
import collections
import os
import secrets
import sqlite3
import struct
import sys
import tempfile
import time

import harness
import registry
from owlmetry.clock import now_ms
from owlmetry.ids import new_id, new_ordered_id
from owlmetry.store import open_store
from owlmetry.store.rows import DeviceRegistration

USERS = 100
CAP = 100
WAL_HEADER, FRAME_HEADER = 32, 24


def thread_counters() -> dict[int, tuple[float, float, int, int]]:
    """Per thread of this process: (CPU s, kernel CPU s, bytes written, write calls)."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/io") as f:
                io = dict(line.split(": ") for line in f.read().splitlines())
        except OSError:  # ended meanwhile
            continue
        found[int(tid)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick,
                           int(io["wchar"]), int(io["syscw"]))
    return found


def wal_frames(path: str) -> tuple[list[int], int]:
    """(page number of every frame, transactions) of the WAL written since it was emptied."""
    with open(path + "-wal", "rb") as f:
        data = f.read()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages, commits, at = [], 0, WAL_HEADER
    while at + FRAME_HEADER + page_size <= len(data):
        page, size_after_commit = struct.unpack(">II", data[at:at + 8])
        pages.append(page)
        commits += size_after_commit > 0
        at += FRAME_HEADER + page_size
    return pages, commits


def wal_report(path: str, tokens: int) -> list[str]:
    pages, commits = wal_frames(path)
    db = sqlite3.connect(path)
    try:
        owner = {page: f"{name} {kind}" for page, name, kind in
                 db.execute("SELECT pageno, name, pagetype FROM dbstat")}
    finally:
        db.close()
    frames = collections.Counter(owner.get(p, "free") for p in pages)
    distinct = collections.Counter(owner.get(p, "free") for p in set(pages))
    lines = [f"  WAL: {len(pages) / tokens:.2f} frames/token, {len(set(pages)) / tokens:.2f} "
             f"distinct pages/token, {tokens / max(commits, 1):.1f} tokens/transaction"]
    lines += [f"    {name}: {count / tokens:.2f} frames, {distinct[name] / tokens:.3f} distinct "
              f"pages per token" for name, count in frames.most_common()]
    return lines


async def measure(path: str, tokens: int, concurrency: int, wal_pages: bool) -> list[str]:
    store = await open_store(f"sqlite:///{path}")
    try:
        await store.migrate()
        engine = store.engine
        names = {os.getpid(): "event loop", engine._writer._thread.native_id: "writer",
                 engine._checkpointer._thread.native_id: "checkpointer"}
        now = now_ms()
        users = [new_id() for _ in range(USERS)]
        for user in users:
            await store.create_user(user, f"{user}@writer.example", now)

        async def register(task: int, count: int) -> None:
            for i in range(count):
                at = now_ms()
                registration = DeviceRegistration("ios_push", secrets.token_hex(32), "production",
                                                  "2.1.0", "iPhone15,3", "iOS 18.2")
                await store.register_device(new_ordered_id(at), users[(task * 7 + i) % USERS],
                                            registration, at)

        per_task = -(-USERS * CAP // concurrency)
        await asyncio.gather(*(register(k, per_task) for k in range(concurrency)))
        if wal_pages:  # the timed part's frames stay in the WAL, from its start
            engine._checkpoints.cancel()
            await engine._writer.execute("PRAGMA wal_autocheckpoint = 0")
            await engine._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        per_task = tokens // concurrency
        before, started = thread_counters(), time.perf_counter()
        await asyncio.gather(*(register(k, per_task) for k in range(concurrency)))
        wall, after = time.perf_counter() - started, thread_counters()
        done = per_task * concurrency
        lines = [f"{done:,} tokens, {done / wall:,.0f}/s; per token: CPU µs (kernel), "
                 "bytes written, write calls"]
        totals = [0.0, 0.0, 0, 0]
        for tid, counters in sorted(after.items()):
            delta = [a - b for a, b in zip(counters, before.get(tid, (0, 0, 0, 0)))]
            totals = [t + d for t, d in zip(totals, delta)]
            if delta[0] or delta[2]:
                lines.append(f"  {names.get(tid, f'thread {tid}')}: {1e6 * delta[0] / done:.1f} "
                             f"({1e6 * delta[1] / done:.1f}), {delta[2] / done:,.0f} B, "
                             f"{delta[3] / done:.2f}")
        lines.append(f"  process: {1e6 * totals[0] / done:.1f} ({1e6 * totals[1] / done:.1f}), "
                     f"{totals[2] / done:,.0f} B, {totals[3] / done:.2f}")
        if wal_pages:
            lines += wal_report(path, done)
        return lines
    finally:
        await store.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-devices", type=int, nargs="+", default=[0, 1_000_000])
    parser.add_argument("--seed-cache", default="/tmp/owl-sqlitemix-seeds",
                        help="registry.py's --seed-cache (seeded there when missing)")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=24,
                        help="registrations in flight (about the tokens a transaction)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wal-pages", action="store_true",
                        help="no checkpoints while timed; the WAL's frames by b-tree")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="owl-writer-") as work, harness.bench_lock():
        os.sched_setaffinity(0, {int(harness.SERVER_CORE)})  # before the Store's threads
        print(f"code: {harness.code_version()}")
        for n in range(args.rounds):
            sizes = args.seed_devices if n % 2 == 0 else args.seed_devices[::-1]
            for devices in sizes:
                path = os.path.join(work, f"writer-{devices}.db")
                if devices:
                    registry.cached_sqlite_seed(args.seed_cache, devices, path)
                load = os.getloadavg()[0]
                lines = asyncio.run(measure(path, args.tokens, args.concurrency, args.wal_pages))
                print(f"[{devices:,} devices, round {n + 1}, load {load:.1f}] " + lines[0])
                print("\n".join(lines[1:]), flush=True)
                for side in ("", "-wal", "-shm"):
                    if os.path.exists(path + side):
                        os.remove(path + side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
