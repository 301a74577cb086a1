#!/usr/bin/env python3
"""The whole server's instructions for one fan-out, plain or with every push option (fan-out's
`--rich`), counted by callgrind: what rich content costs the server, whatever the machine's
load.

    python benchmarks/rich_server_cost.py --variant rich --users 500 [--out /tmp/cg.rich]
        [--backend sqlite|postgresql]
    callgrind_annotate /tmp/cg.rich | head -40

As `fanout.py` (its seeding, server settings, POST and poll): a fresh database (SQLite: a
file; PostgreSQL: a throwaway cluster, whose own processes are not counted) of `--users` users
with 1-3 production devices (seeded), then `owlmetry serve` under
`valgrind --tool=callgrind --instr-atstart=no` (pinned to core 0) against the shared harness's
Node mock APNs (core 1, not counted), holding the bench lock. Instrumentation is switched on (`callgrind_control -i
on`) just before the POST and off once no delivery is pending, so the count is the request,
its fan-out and every answer's write, not the start. Under callgrind the server runs some 50
times slower: keep `--users` small enough that no push nears its 30 s deadline (500 is).
Prints one JSON line: variant, devices, instructions, instructions per device, checks; with
`--threads`, also each thread's instructions per device, the event loop's first: the other
threads' (SQLite's writer, ...) vary with how the answers' writes happened to batch.
"""

import argparse
import asyncio
import glob
import json
import os
import subprocess
import sys
import tempfile

import fanout
import harness
import profiling
from owlmetry.store import open_store


def main(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="owlrichserver-") as work, harness.bench_lock(), \
            harness.MockAPNs(os.path.join(work, "mock.log")) as mock:
        if args.backend == "sqlite":
            return count(args, work, mock, f"sqlite:///{os.path.join(work, 'fanout.db')}")
        with harness.postgres_cluster() as (cluster, _):
            return count(args, work, mock, harness.create_database(cluster, "richcost"))


def count(args, work: str, mock: harness.MockAPNs, database: str) -> dict:
    """The server's instructions for one fan-out on `database` (empty, migrated on seeding)."""
    per_user = fanout.plan(args.users, args.seed)
    n_devices = sum(per_user)
    user_ids = asyncio.run(fanout.seed_database(database, per_user))
    api_key = harness.owlmetry_cli("keys", "create", "--kind", "server", "--name", "rich",
                                   "--database", database)
    port = harness.free_port()
    out = args.out or os.path.join(work, "callgrind.out")
    with open(os.path.join(work, "server.log"), "w") as log:
        server = subprocess.Popen(
            ["taskset", "-c", harness.SERVER_CORE, "valgrind", "--tool=callgrind",
             "--instr-atstart=no", f"--callgrind-out-file={out}",
             f"--separate-threads={'yes' if args.threads else 'no'}", sys.executable,
             "-m", "owlmetry", "serve", "--port", str(port), "--database", database],
            env=fanout.server_env(mock, args.connections), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=harness.REPO)
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(open_store(database))
    try:
        harness.wait_healthy(url, server, timeout=600)
        mock.reset()
        profiling.callgrind("on", server.pid)
        run = loop.run_until_complete(fanout.fanout_once(
            url, api_key, user_ids, store, n_devices, 0.05, 900, 50_000,
            args.variant == "rich"))
        profiling.callgrind("off", server.pid)
        stats = mock.stats()
    finally:
        loop.run_until_complete(store.close())
        loop.close()
        harness.stop_process(server, timeout=120)
    # One file per thread with --threads (callgrind numbers them from -01, the main thread).
    threads = ([profiling.instructions(path) for path in sorted(glob.glob(glob.escape(out) + "-*"))]
               if args.threads else [profiling.instructions(out)])
    counted = sum(threads)
    problems = fanout.fanout_checks(run, len(user_ids), n_devices, stats)
    result = {"variant": args.variant, "backend": args.backend, "devices": n_devices,
              "instructions": counted, "per_device": round(counted / n_devices),
              "seconds": round(run["seconds"], 1), "requests": stats["requests_received"],
              "problems": problems}
    if args.threads:
        result["per_device_by_thread"] = [round(n / n_devices) for n in threads]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("plain", "rich"), default="plain")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--out", help="keep callgrind's file here")
    parser.add_argument("--threads", action="store_true",
                        help="count each thread apart too (the event loop's is the first; "
                             "SQLite's writer and asyncpg's work are in others)")
    result = main(parser.parse_args())
    print(json.dumps(result), flush=True)
    sys.exit(1 if result["problems"] else 0)
