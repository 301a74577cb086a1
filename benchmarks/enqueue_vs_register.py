#!/usr/bin/env python3
"""Registrations while producers enqueue: device registration latency (p50/p99/max) while
producers send 50,000-recipient notifications back to back, on SQLite and PostgreSQL.

    python benchmarks/enqueue_vs_register.py [--backend sqlite|postgresql|both] [--seconds 30]
        [--producers 2] [--recipients 50000] [--rate 50] [--chunk N] [--stalls]

Per backend, on a fresh database (SQLite: a new file in a temp folder; PostgreSQL: a new
database in a throwaway cluster with PostgreSQL's default durable settings, unpinned):
--recipients users (one batched INSERT, not timed) and one more who registers devices, a
server API key and that user's JWT (`owlmetry keys create`, `users token`). Then a fresh
`owlmetry serve` pinned to core 0, without APNs credentials (its dispatcher claims the
deliveries and records them skipped: its writes compete for the database as in production);
this script runs on core 1. The whole script holds /tmp/owl-bench.lock (flock).

Measured, for --seconds: --producers loops each POST /v1/notifications with every user id,
the next as soon as the last was answered (202), and a client registering a new device
(POST /v1/devices, a new token each time) --rate times a second on a fixed schedule (open
loop: a registration that waits does not delay the next one's start, so a stall shows in
every registration it holds up, not in one). Registrations start one second after the
producers and stop with them. Prints a markdown table (registration p50/p99/max, how many;
enqueues done and their mean answer time) and one JSON line per backend. Exit status 1 when
any request failed.

--chunk N runs the server with the store's ENQUEUE_CHUNK set to N (to choose the chunk size;
the default is the code's own). --stalls runs it on asyncio's loop with the stall probe
(`profiling.py`) and prints, per backend, the event-loop turns of 20 ms or more grouped by
where they ended: what the registrations waited behind.
"""

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time

import aiohttp
import orjson

import harness
import profiling
from harness import CLIENT_CORE
from owlmetry.clock import now_ms
from owlmetry.ids import new_id
from owlmetry.store import open_store

INSERT_USERS = """
WITH batch (id, email, created_at) AS ({batch})
INSERT INTO users (id, email, created_at) SELECT id, email, created_at FROM batch
"""
REGISTRAR = "registrar@bench.example"


async def seed_database(url: str, n: int) -> list[str]:
    store = await open_store(url)
    try:
        await store.migrate()
        now, run = now_ms(), secrets.token_hex(3)
        users = [(new_id(), f"user{i}-{run}@bench.example", now) for i in range(n)]
        await store.execute_batch(INSERT_USERS, ("text", "text", "bigint"), users)
        await store.execute("ANALYZE")
        return [user_id for user_id, _, _ in users]
    finally:
        await store.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, api_key: str, jwt: str, user_ids: list[str], args) -> dict:
    body = orjson.dumps({"user_ids": user_ids, "type": "bench", "title": "Enqueue",
                         "body": "one notification to every user"})
    producer_headers = {"Authorization": f"Bearer {api_key}",
                        "Content-Type": "application/json"}
    user_headers = {"Authorization": f"Bearer {jwt}"}
    stop = asyncio.Event()
    enqueues: list[float] = []
    registrations: list[float] = []
    failures: list[str] = []

    async def produce(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            async with session.post(f"{url}/v1/notifications", data=body,
                                    headers=producer_headers) as resp:
                answer = await resp.read()
                if resp.status != 202:
                    failures.append(f"producer: {resp.status} {answer[:200]!r}")
                    return
            enqueues.append(time.perf_counter() - t0)

    async def register(session: aiohttp.ClientSession) -> None:
        await harness.register_new_device(session, url, user_headers, registrations, failures)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await (await session.get(f"{url}/healthz")).read()
        producers = [asyncio.create_task(produce(session)) for _ in range(args.producers)]
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        pending = set()
        tick = 0
        while time.perf_counter() - started < args.seconds and not failures:
            pending.add(asyncio.create_task(register(session)))
            tick += 1
            await asyncio.sleep(max(0.0, started + tick / args.rate - time.perf_counter()))
        stop.set()
        await asyncio.gather(*pending, *producers)
    return {
        "registrations": len(registrations),
        "register_p50_ms": percentile(registrations, 0.50) * 1000 if registrations else None,
        "register_p99_ms": percentile(registrations, 0.99) * 1000 if registrations else None,
        "register_max_ms": max(registrations) * 1000 if registrations else None,
        "enqueues": len(enqueues),
        "enqueue_mean_s": statistics.mean(enqueues) if enqueues else None,
        "enqueue_max_s": max(enqueues) if enqueues else None,
        "problems": failures[:5],
    }


def one_backend(backend: str, database: str, args, work: str) -> dict:
    user_ids = asyncio.run(seed_database(database, args.recipients))
    env = dict(os.environ, JWT_SECRET=secrets.token_urlsafe(32))
    for name in ("ACCESS_LOG", "DATABASE_URL", "APNS_KEY_ID", "APNS_KEY_P8",
                 "APNS_KEY_P8_PATH", "SMTP_URL"):
        env.pop(name, None)
    api_key = harness.owlmetry_cli("keys", "create", "--kind", "server", "--name", "bench",
                                   "--database", database, env=env)
    harness.owlmetry_cli("users", "create", REGISTRAR, "--database", database, env=env)
    jwt = harness.owlmetry_cli("users", "token", REGISTRAR, "--database", database, env=env)
    launcher = ("-m", "owlmetry")
    if args.chunk:
        launcher = ("-c", "import sys; from owlmetry.store import deliveries; "
                          f"deliveries.ENQUEUE_CHUNK = {args.chunk}; "
                          "from owlmetry.cli import main; sys.exit(main())")
    stalls_out = os.path.join(work, f"{backend}-stalls.json")
    if args.stalls:
        launcher = profiling.stall_probe_launcher(stalls_out)
    log = os.path.join(work, f"{backend}-server.log")
    with harness.running_server(database, env, log, launcher) as (url, _pid):
        with harness.pinned_self(CLIENT_CORE):
            result = asyncio.run(measure(url, api_key, jwt, user_ids, args))
    if args.stalls:
        with open(stalls_out) as f:
            stalls = json.load(f)
        print(f"[{backend}] {len(stalls)} event-loop turns of {profiling.PROBE_STALL_MS:.0f} ms "
              f"or more:\n{profiling.stalls_table(stalls)}", file=sys.stderr)
    result.update(backend=backend, version=harness.code_version(), chunk=args.chunk,
                  producers=args.producers, recipients=args.recipients, rate=args.rate,
                  seconds=args.seconds)
    result["load_1m"] = os.getloadavg()[0]
    print(f"[{backend}] {result['registrations']} registrations: p50 "
          f"{fmt(result['register_p50_ms'])} ms, p99 {fmt(result['register_p99_ms'])} ms, max "
          f"{fmt(result['register_max_ms'])} ms; {result['enqueues']} enqueues, mean "
          f"{fmt(result['enqueue_mean_s'], 2)} s, load {result['load_1m']:.1f} "
          f"{'; '.join(result['problems'])}", file=sys.stderr)
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(results: list[dict]) -> None:
    print("| backend | chunk | producers | registrations | p50 ms | p99 ms | max ms | enqueues "
          "| enqueue mean s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['chunk'] or 'default'} | {r['producers']} "
              f"| {r['registrations']} | {fmt(r['register_p50_ms'])} "
              f"| {fmt(r['register_p99_ms'])} | {fmt(r['register_max_ms'])} | {r['enqueues']} "
              f"| {fmt(r['enqueue_mean_s'], 2)} | {r['load_1m']:.1f} |")
    for r in results:
        print(json.dumps(r))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=30, help="registrations for (30)")
    parser.add_argument("--producers", type=int, default=2, help="concurrent producers (2)")
    parser.add_argument("--recipients", type=int, default=50_000, help="per notification")
    parser.add_argument("--rate", type=float, default=50, help="registrations a second (50)")
    parser.add_argument("--chunk", type=int, help="the server's ENQUEUE_CHUNK")
    parser.add_argument("--stalls", action="store_true",
                        help="probe the server's event-loop turns (asyncio's loop, not uvloop)")
    parser.add_argument("--time-limit", type=int, default=1200,
                        help="abort after this many seconds")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    harness.stop_on_signals(args.time_limit)
    results = []
    with tempfile.TemporaryDirectory(prefix="owlenqueue-") as work, harness.bench_lock():
        for backend in backends:
            if backend == "sqlite":
                results.append(one_backend(
                    backend, f"sqlite:///{os.path.join(work, 'enqueue.db')}", args, work))
            else:
                with harness.postgres_cluster() as (cluster, _postmaster):
                    results.append(one_backend(
                        backend, harness.create_database(cluster, "enqueue"), args, work))
    signal.alarm(0)
    print_report(results)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    harness.run_main(main)
