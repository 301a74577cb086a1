#!/usr/bin/env python3
"""Fan-out against a hostile APNs: the same fan-out with and without the faults, in one run, and
the throughput ratio (issue 15's goal: the faulty run at least 0.8 of the fault-free one).

    python benchmarks/hostile_apns.py [--devices 20000] [--devices-per-user 2] [--runs 1]
        [--backend sqlite|postgresql] [--connections 4] [--json] [--keep DIR] [--py-spy DIR]
        [--only dead,429,503,goaway,streams,resets]

Per run, a pair of fan-outs (the fault-free one first in even runs, the faulty one first in
odd runs, so that a machine getting busier does not favour either): each on a fresh database
(SQLite: a new file; PostgreSQL: a new database in one throwaway cluster) seeded through the
store with the users and their production devices (not timed), a fresh `owlmetry serve`
pinned to core 0 and a fresh project mock (`python -m owlmetry.apns.mock`, the shared
harness's certificate and auth key) pinned to core 1 with this script; PostgreSQL's processes
unpinned, so they share the mock's core too (`--database-core server`: pinned with the server,
since a real APNs does not lose CPU to our database's work, which faults triple). One POST
/v1/notifications to every user, then "is any delivery still pending?" every 20 ms: the time
is from the POST to that poll, the throughput devices / time.

The faults (the mock's command line), as issue 15 lists them:
- `--dead-tokens 0.1`: a tenth of the tokens (by a seeded hash) answer 410 Unregistered;
- `--p429 0.05 --p503 0.05`: 5% of requests answered 429, 5% 503 (a hash of token and
  request number, so a retry draws again);
- `--goaway-after 2000`: GOAWAY on every connection after its 2,000th stream;
- `--streams-schedule`: SETTINGS_MAX_CONCURRENT_STREAMS 1,000 -> 1 on every connection at a
  third of the requests, back to 1,000 500 requests later;
- `--drop-after 1500 --drop-rst --max-drops 3`: the first three connections reset (TCP RST)
  at their 1,500th request, with a thousand streams in flight.

Per fan-out it also prints where the time went: the CPU seconds of the server and of the mock
(and per device / per request), of PostgreSQL's processes (not pinned: they share the mock's core),
and the mock's tail (when 99% of its answers had gone out, when the last did, and how many
answers after the 99% were to a token's second or later request: retries setting the end);
with `--json`, the mock's answers per 100 ms by status (`mock_timeline`), and with `--trail` its
connection events (`mock_events`) and every answer but a first 200 (`mock_trail`: each unlucky
push's tries).

Checks (exit status 1 when one fails): no delivery pending; the fault-free run delivered
every device once; the faulty run recorded every device once: the live ones delivered, the
dead ones removed (exactly the tokens the mock's seed makes dead); the mock accepted a push
twice only as often as pushes were on a reset connection.
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import aiohttp
import orjson

import harness
import profiling
from harness import CLIENT_CORE
from owlmetry.apns.mock import MockBehaviour
from owlmetry.clock import now_ms
from owlmetry.ids import new_id
from owlmetry.store import DeviceRegistration, open_store

CERT_DIR = harness.APNS_HARNESS
SEED = 1
DEAD_SHARE = 0.1

INSERT_USERS = """
WITH batch (id, email, created_at) AS ({batch})
INSERT INTO users (id, email, created_at) SELECT id, email, created_at FROM batch
"""
ANSWERED_AT = "SELECT answered_at FROM notification_pushes"
PENDING = """
SELECT count(*) FROM (
    SELECT 1 FROM notification_deliveries WHERE status = 'pending' LIMIT 1) AS any_pending
"""


FAULT_KINDS = ("dead", "429", "503", "goaway", "streams", "resets")


def fault_args(devices: int, kinds=FAULT_KINDS) -> list[str]:
    """The mock's faults; `kinds`, a subset of FAULT_KINDS, to see what each one costs."""
    third, back = devices // 3, devices // 3 + 500
    args = {"dead": ["--dead-tokens", str(DEAD_SHARE)], "429": ["--p429", "0.05"],
            "503": ["--p503", "0.05"], "goaway": ["--goaway-after", "2000"],
            "streams": ["--streams-schedule", f"{third}:1,{back}:1000"],
            "resets": ["--drop-after", "1500", "--drop-rst", "--max-drops", "3"]}
    return ["--seed", str(SEED)] + [a for kind in kinds for a in args[kind]]


class Mock:
    """The project's mock APNs in its own process, pinned to CLIENT_CORE."""

    def __init__(self, faults: list[str], log_path: str, wrapper: tuple[str, ...] = ()):
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["taskset", "-c", CLIENT_CORE, *wrapper, sys.executable, "-m",
                 "owlmetry.apns.mock",
                 "--port", "0", "--stats-port", "0", "--cert", f"{CERT_DIR}/mock-cert.pem",
                 "--key", f"{CERT_DIR}/mock-key.pem", "--auth-key",
                 f"{CERT_DIR}/apns-auth-key.p8", "--key-id", harness.KEY_ID,
                 "--team-id", harness.TEAM_ID, *faults],
                stdout=subprocess.PIPE, stderr=log, start_new_session=True, cwd=harness.REPO)
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if "port" not in ready:
            harness.stop_process(self.proc)
            raise RuntimeError(f"the mock did not start (see {log_path})")
        self.url = f"https://127.0.0.1:{ready['port']}"
        self._stats_url = f"http://127.0.0.1:{ready['stats_port']}/stats"

    def stats(self) -> dict:
        with urllib.request.urlopen(self._stats_url, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        harness.stop_process(self.proc)


async def seed(url: str, n_users: int, per_user: int) -> list[str]:
    store = await open_store(url)
    try:
        await store.migrate()
        now = now_ms()
        users = [(new_id(), f"hostile{i}@bench.example", now) for i in range(n_users)]
        await store.execute_batch(INSERT_USERS, ("text", "text", "bigint"), users)
        stored = await asyncio.gather(*(
            store.register_device(new_id(), user_id, DeviceRegistration(
                "ios_push", harness.apns_token(u * per_user + k), "production", None, None,
                None), now)
            for u, (user_id, _, _) in enumerate(users) for k in range(per_user)))
        if any(device is None for device in stored):
            raise RuntimeError("a seeded device's user does not exist")
        return [user_id for user_id, _, _ in users]
    finally:
        await store.close()


async def timed_fanout(url: str, database: str, api_key: str, user_ids: list[str],
                       n_devices: int) -> dict:
    body = orjson.dumps({"user_ids": user_ids, "type": "bench", "title": "Hostile",
                         "body": "one notification to every user"})
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    store = await open_store(database)
    try:
        async with aiohttp.ClientSession() as session:
            await (await session.get(f"{url}/healthz")).read()
            t0, wall0_ms = time.perf_counter(), time.time() * 1000
            async with session.post(f"{url}/v1/notifications", data=body,
                                    headers=headers) as response:
                answer, status = await response.read(), response.status
        if status != 202:
            raise RuntimeError(f"POST /v1/notifications: {status} {answer[:300]!r}")
        ids = orjson.loads(answer)["notification_ids"]
        while True:
            ((pending,),) = await store.execute(PENDING)
            if pending == 0:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("deliveries still pending after 600 s")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - t0
        progress = await store.progress(ids)
        # When the answers were recorded, from the POST (the server's clock: this host's).
        answered = sorted(at for (at,) in await store.execute(ANSWERED_AT))
        since = [(at - wall0_ms) / 1000 for at in answered]
        quantiles = {f"p{q}": round(since[min(len(since) - 1, len(since) * q // 100)], 2)
                     for q in (10, 50, 90, 99, 100)} if since else {}
    finally:
        await store.close()
    return {"seconds": seconds, "devices_per_second": n_devices / seconds,
            "answers_recorded_s": quantiles,
            "deliveries": {k.value: v for k, v in progress.deliveries.items()},
            "pushes": {k.value: v for k, v in progress.pushes.items()}}


def tail(timeline: list) -> dict:
    """From the mock's answers per quarter second: when 99% of them had gone out, when the
    last did, and how many answers after the 99% were to a token's second or later request
    (the fan-out's end set by retries, not by its work)."""
    counts = [(t, sum(n for k, n in c.items() if k != "again"), c.get("again", 0))
              for t, c in timeline]
    total, seen, p99 = sum(n for _, n, _ in counts), 0, None
    for t, n, _ in counts:
        seen += n
        if p99 is None and seen >= 0.99 * total:
            p99 = t
    return {"answers_99_s": p99, "last_s": counts[-1][0] if counts else None,
            "again_after_99": sum(a for t, _, a in counts if p99 is not None and t > p99)}


def checks(run: dict, hostile: bool, n_devices: int, dead: int) -> list[str]:
    problems = []
    stats, pushes = run["mock"], run["pushes"]
    if "pending" in run["deliveries"]:
        problems.append(f"deliveries still pending: {run['deliveries']}")
    # No dead tokens (`--only` without them): no "removed" outcome to count.
    expected = ({"delivered": n_devices - dead, "removed": dead} if hostile and dead
                else {"delivered": n_devices})
    if pushes != expected:
        problems.append(f"pushes {pushes}, expected {expected}")
    if stats["unique_delivered"] != n_devices - (dead if hostile else 0):
        problems.append(f"mock accepted {stats['unique_delivered']} distinct tokens")
    if stats["duplicate_delivered"] > (stats["reset_judged"] if hostile else 0):
        problems.append(f"{stats['duplicate_delivered']} duplicates, more than the "
                        f"{stats['reset_judged']} requests on reset connections")
    if stats["protocol_errors"]:
        problems.append(f"{stats['protocol_errors']} protocol errors at the mock")
    return problems


def one_fanout(hostile: bool, database: str, n_users: int, per_user: int, connections: int,
               work: str, tag: str, profile: str | None = None, kinds=FAULT_KINDS,
               db_pid: int | None = None) -> dict:
    """One fan-out; with `profile`, the server sampled by py-spy into that file and the mock
    into `profile`.mock (not timed)."""
    n_devices = n_users * per_user
    user_ids = asyncio.run(seed(database, n_users, per_user))
    mock = Mock(fault_args(n_devices, kinds) if hostile else [], f"{work}/mock-{tag}.log")
    try:
        env = dict(os.environ, APNS_KEY_ID=harness.KEY_ID, APNS_TEAM_ID=harness.TEAM_ID,
                   APNS_BUNDLE_ID=harness.TOPIC, APNS_KEY_P8_PATH=f"{CERT_DIR}/apns-auth-key.p8",
                   APNS_PRODUCTION_URL=mock.url, APNS_SANDBOX_URL=mock.url,
                   APNS_CA_FILE=f"{CERT_DIR}/mock-cert.pem", APNS_CONNECTIONS=str(connections),
                   JWT_SECRET=secrets.token_urlsafe(32))
        for name in ("ACCESS_LOG", "DATABASE_URL", "APNS_KEY_P8"):
            env.pop(name, None)
        api_key = harness.owlmetry_cli("keys", "create", "--kind", "server", "--database",
                                       database, env=env)
        with harness.running_server(database, env, f"{work}/server-{tag}.log") as (url, pid):
            cpu0 = harness.cpu_seconds(pid), harness.cpu_seconds(mock.proc.pid)
            db0 = harness.exact_tree_cpu(db_pid) if db_pid else {}
            spies = contextlib.ExitStack()
            if profile:  # the mock is the busy side of this benchmark: sampled too
                for who, out in ((pid, profile), (mock.proc.pid, profile + ".mock")):
                    spies.enter_context(profiling.py_spy_recording(
                        who, out, "--rate", "200", "--nonblocking", "--threads", core=CLIENT_CORE))
            with harness.pinned_self(CLIENT_CORE), spies:
                run = asyncio.run(timed_fanout(url, database, api_key, user_ids, n_devices))
            # Which side was busy: a process near 1 CPU-second a second set the pace.
            run["server_cpu_s"] = harness.cpu_seconds(pid) - cpu0[0]
            run["mock_cpu_s"] = harness.cpu_seconds(mock.proc.pid) - cpu0[1]
            # PostgreSQL is not pinned: what it does on the mock's core the mock cannot.
            run["db_cpu_s"] = (round(harness.cpu_between(db0, harness.exact_tree_cpu(db_pid)), 3)
                               if db_pid else None)
            time.sleep(0.3)  # the mock's last streams close
            run["mock"] = mock.stats()
            run["mock_timeline"] = run["mock"].pop("timeline", [])
            run["mock_events"] = run["mock"].pop("events", [])
            run["mock_trail"] = run["mock"].pop("trail", [])
            run["mock_tail"] = tail(run["mock_timeline"])
            # Per unit of work, which the host's load moves less than the wall time.
            run["server_us_per_device"] = round(run["server_cpu_s"] / n_devices * 1e6, 1)
            run["mock_us_per_request"] = round(
                run["mock_cpu_s"] / max(1, run["mock"]["requests"]) * 1e6, 1)
            run["load"] = round(os.getloadavg()[0], 2)
    finally:
        mock.stop()
    run["faults"] = hostile
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--devices-per-user", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--database-core", choices=["server", "any"], default="any",
                    help="PostgreSQL's processes anywhere (default) or on the server's core")
    ap.add_argument("--json", action="store_true", help="one JSON line per fan-out on stdout")
    ap.add_argument("--trail", action="store_true",
                    help="the JSON lines with the mock's connection events and every unlucky "
                         "push's tries")
    ap.add_argument("--keep", metavar="DIR", help="keep the logs and databases in DIR")
    ap.add_argument("--only", metavar="KINDS", default=",".join(FAULT_KINDS),
                    help="the faulty run's faults, a comma-separated subset of "
                    f"{','.join(FAULT_KINDS)} (default: all of them, issue 15's mix)")
    ap.add_argument("--py-spy", metavar="DIR", help="then one more pair (not timed) with the "
                    "server sampled by py-spy; profiles and their summaries into DIR")
    args = ap.parse_args(argv)
    harness.stop_on_signals(3600)
    per_user = args.devices_per_user
    n_users = args.devices // per_user
    n_devices = n_users * per_user
    kinds = tuple(k for k in args.only.split(",") if k)
    if set(kinds) - set(FAULT_KINDS):
        ap.error(f"--only: unknown fault kinds {sorted(set(kinds) - set(FAULT_KINDS))}")
    dead_rule = MockBehaviour(dead_share=DEAD_SHARE if "dead" in kinds else 0, seed=SEED)
    dead = sum(dead_rule.is_dead(harness.apns_token(i)) for i in range(n_devices))
    runs = {False: [], True: []}
    problems = []
    with harness.bench_lock(), tempfile.TemporaryDirectory(prefix="owl-hostile-") as temp:
        work = args.keep or temp
        os.makedirs(work, exist_ok=True)
        cluster = None
        if args.backend == "postgresql":
            cluster = harness.postgres_cluster()
            pg, postmaster = cluster.__enter__()
            if args.database_core == "server":
                # Backends fork from the postmaster and inherit its core.
                for pid in harness.tree_pids(postmaster):
                    os.sched_setaffinity(pid, {int(harness.SERVER_CORE)})
        try:
            for i in range(args.runs):
                for hostile in ((False, True) if i % 2 == 0 else (True, False)):
                    tag = f"{i}-{'faults' if hostile else 'clean'}"
                    database = (harness.create_database(pg, f"hostile_{i}_{int(hostile)}")
                                if cluster else f"sqlite:///{work}/{tag}.db")
                    run = one_fanout(hostile, database, n_users, per_user, args.connections,
                                     work, tag, kinds=kinds,
                                     db_pid=postmaster if cluster else None)
                    run["problems"] = checks(run, hostile, n_devices, dead)
                    problems += run["problems"]
                    runs[hostile].append(run)
                    m = run["mock"]
                    db_cpu = "" if run["db_cpu_s"] is None else f"database {run['db_cpu_s']:.2f}; "
                    print(f"[{args.backend}] run {i + 1} {'faults' if hostile else 'clean '}: "
                          f"{run['devices_per_second']:,.0f} devices/s, {run['seconds']:.2f}s "
                          f"(CPU s: server {run['server_cpu_s']:.2f}, mock {run['mock_cpu_s']:.2f}; "
                          f"{db_cpu}"
                          f"server {run['server_us_per_device']} us/device, mock "
                          f"{run['mock_us_per_request']} us/request; load {run['load']}; "
                          f"mock answers: 99% by {run['mock_tail']['answers_99_s']}s, last "
                          f"{run['mock_tail']['last_s']}s, "
                          f"{run['mock_tail']['again_after_99']} retries after the 99%) "
                          f"(answers recorded by {run['answers_recorded_s']}); "
                          f"mock: {m['requests']} requests, {m['responses_by_status']}, "
                          f"{m['goaways_sent']} GOAWAY, {m['drops']} resets, "
                          f"{m['max_streams_changes']} stream-limit changes, {m['protocol_error_reasons'] or ''} "
                          f"{m['duplicate_delivered']} duplicates "
                          f"{'; '.join(run['problems'])}", file=sys.stderr)
                    if args.json:
                        if not args.trail:  # ~150 KB a faulty run
                            del run["mock_events"], run["mock_trail"]
                        print(json.dumps({"backend": args.backend, "devices": n_devices,
                                          "database_core": args.database_core, **run}),
                              flush=True)
            if args.py_spy:
                os.makedirs(args.py_spy, exist_ok=True)
                for hostile in (False, True):
                    tag = f"spy-{'faults' if hostile else 'clean'}"
                    database = (harness.create_database(pg, f"hostile_spy_{int(hostile)}")
                                if cluster else f"sqlite:///{work}/{tag}.db")
                    out = os.path.join(args.py_spy, f"{tag}.txt")
                    run = one_fanout(hostile, database, n_users, per_user, args.connections,
                                     work, tag, profile=out, kinds=kinds)
                    with open(out + ".summary", "w") as f:
                        f.write(f"{run['seconds']:.2f} s, server CPU {run['server_cpu_s']:.2f} s"
                                f"\n{profiling.summarize_profile(out, 40)}\n")
                    with open(out + ".mock.summary", "w") as f:
                        f.write(f"{run['seconds']:.2f} s, mock CPU {run['mock_cpu_s']:.2f} s, "
                                f"{run['mock']['requests']} requests"
                                f"\n{profiling.summarize_profile(out + '.mock', 60)}\n")
                    print(f"py-spy {tag}: {out}.summary", file=sys.stderr)
        finally:
            if cluster is not None:
                cluster.__exit__(None, None, None)
    if not args.runs:  # --runs 0 --py-spy DIR: the profiles only
        return 1 if problems else 0
    clean = statistics.median(r["devices_per_second"] for r in runs[False])
    faulty = statistics.median(r["devices_per_second"] for r in runs[True])
    load = os.getloadavg()[0]

    def per(key: str, hostile: bool) -> float:
        return statistics.median(r[key] for r in runs[hostile])

    print(f"{args.backend}, {n_devices:,} devices ({dead:,} dead), {args.runs} run(s), "
          f"load {load:.1f}: fault-free {clean:,.0f} devices/s, with faults {faulty:,.0f} "
          f"devices/s, ratio {faulty / clean:.2f} (goal >= 0.8); medians: server "
          f"{per('server_us_per_device', False)} / {per('server_us_per_device', True)} us a "
          f"device, mock {per('mock_us_per_request', False)} / "
          f"{per('mock_us_per_request', True)} us a request (fault-free / faults)"
          f"{'; PROBLEMS: ' + '; '.join(problems) if problems else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    harness.run_main(main)
