"""Devices API throughput: requests/s of one `owlmetry serve` process pinned to one core.

Runs the shared wrk workload (/work/shared/bench/registry: register_new, register_refresh,
list, mixed 70/25/5) the way the Owlmetry reference was measured: the server under
`taskset -c 0`, `taskset -c 1 wrk -t1 -c64 -d<duration> --timeout 10s`, CHANNEL=ios_push
PLATFORM=none, PostgreSQL unpinned. Per backend it builds a fresh database (SQLite: a temp
file; PostgreSQL: a throwaway cluster with default durable settings, i.e. fsync on, or the
database named by --postgres-url), migrates it, creates 100 writer and 100 lister users with
`owlmetry users create`, mints their JWTs with the server's JWT_SECRET (mint_jwt.py), seeds
1,000 refresh tokens and 5 devices per lister (seed_devices.py), starts the server, then runs
each scenario --runs times.

`--seed-devices N [N ...]` runs each backend once per size on a fresh database that already
holds N devices (of N/5 users of their own, written with `store.execute_batch` before the server
starts, then ANALYZE): `--seed-devices 0 1000000` measures the registry empty and at a million.
`--seed-cache DIR` keeps SQLite's seeded file in DIR (per size and schema) and copies it for each
later invocation; PostgreSQL is seeded afresh each time.

`--alternate ROUNDS` (instead of --runs) answers whether a size / empty miss is real or the
host's noise: every size's database and server are up at once (PostgreSQL: a cluster each),
and each scenario runs ROUNDS rounds of one run per size, ABBA, so the sizes share the same
minutes; it adds a table of every figure's median and range over the rounds and each round's
size / empty ratio (median and range) by requests/s, by the server's CPU per request and, on
PostgreSQL, by the database's (its processes' CPU per request), the CPU ratios being the ones
the host's load moves least.

Each backend's sizes run back to back in one hold of the lock. Prints a markdown table (the
run with the median requests/s, its p50/p99, the server's CPU per request, non-2xx summed over
all runs, ratio to the reference), then the ratios that do not depend on how busy the machine
is that hour: SQLite / PostgreSQL per scenario and size, and each size / the empty database per
backend and scenario; one JSON line per (backend, size, scenario). Any non-2xx or
socket error is reported loudly and makes the exit status 1. Each backend's set-up and runs
hold /tmp/owl-bench.lock (flock), the lock the machine's other benchmarks take, so they do not
share the two cores. The server, the PostgreSQL cluster and the temp files are removed on exit,
Ctrl-C, SIGTERM and the --time-limit alarm (default: estimated from the flags, per backend,
from when it holds the lock: a wait behind other benchmarks does not count).

    python benchmarks/registry.py [--backend sqlite|postgresql|both] [--duration 20s]
        [--runs 3] [--scenarios register_new list ...] [--postgres-url URL]
        [--seed-devices 0 1000000] [--seed-cache /tmp/registry-seeds]
        [--py-spy DIR]   # also record a py-spy profile of the server per scenario (extra run)
        [--alternate 3]  # sizes side by side, ABBA rounds, median and range of each ratio
        [--statements]   # servers under the statement timer: per size, each statement's calls
                         # and its database thread's CPU (SQLite: registrations a transaction)
"""

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile

import bulk_seed
import harness
import profiling
from harness import CLIENT_CORE as WRK_CORE
from owlmetry.clock import now_ms
from owlmetry.ids import new_id
from owlmetry.retention import DAY_MS
from owlmetry.store import open_store

BENCH = "/work/shared/bench/registry"
SCENARIOS = ("register_new", "register_refresh", "list", "mixed")
REFERENCE_RPS = {"register_new": 975, "register_refresh": 833, "list": 1491, "mixed": 917}
USERS_PER_ROLE = 100
SETUP_SECONDS = 300  # per backend: cluster, users, seeding, server start
SEED_DEVICES_PER_SECOND = 5_000  # --seed-devices' pace, for the time limit (it runs at 10-30k)

# --seed-devices: users of their own, DEVICES_PER_SEEDED_USER devices each, seen over the last
# 90 days; rows in random token order, as registrations come.
DEVICES_PER_SEEDED_USER = 5
SEED_ROWS_PER_STATEMENT = 50_000
INSERT_USERS = """
WITH batch (id, email, created_at) AS ({batch})
INSERT INTO users (id, email, created_at) SELECT id, email, created_at FROM batch
"""
INSERT_DEVICES = """
WITH batch (id, user_id, token, seen) AS ({batch})
INSERT INTO user_devices (id, user_id, channel, platform, token, environment, app_version,
                          device_model, os_version, last_seen_at, created_at)
SELECT id, user_id, 'ios_push', 'ios', token, 'production', '2.1.0', 'iPhone15,3', 'iOS 18.2',
       seen, seen
FROM batch
"""


@contextlib.contextmanager
def postgres_database(url: str | None):
    """(URL, the postmaster's pid or None) of a database to benchmark: `url` itself, or `bench`
    in a new throwaway cluster."""
    if url:
        yield url, None
        return
    with harness.postgres_cluster() as (cluster, postmaster):
        yield harness.create_database(cluster, "bench"), postmaster


async def seed_devices(database: str, n: int, run_id: str) -> None:
    """`n` devices of n / DEVICES_PER_SEEDED_USER new users, straight into the tables."""
    store = await open_store(database)
    try:
        now = now_ms()
        n_users = -(-n // DEVICES_PER_SEEDED_USER)
        users = [new_id() for _ in range(n_users)]
        for start in range(0, n_users, SEED_ROWS_PER_STATEMENT):
            await store.execute_batch(
                INSERT_USERS, ("text", "text", "bigint"),
                [(user_id, f"seed{start + i}-{run_id}@bench.example", now)
                 for i, user_id in enumerate(users[start:start + SEED_ROWS_PER_STATEMENT])])
        for start in range(0, n, SEED_ROWS_PER_STATEMENT):
            count = min(SEED_ROWS_PER_STATEMENT, n - start)
            await store.execute_batch(
                INSERT_DEVICES, ("text", "text", "text", "bigint"),
                [(new_id(), users[(start + i) // DEVICES_PER_SEEDED_USER], secrets.token_hex(32),
                  now - secrets.randbelow(90 * DAY_MS)) for i in range(count)])
        # As a database in use has statistics (and PostgreSQL no vacuum debt from the seeding).
        await store.execute("VACUUM ANALYZE" if store.engine.name == "postgresql" else "ANALYZE")
    finally:
        await store.close()


def cached_sqlite_seed(folder: str, devices: int, path: str) -> None:
    """`path`: a copy of the cached file seeded with `devices` devices, seeded first if missing."""
    os.makedirs(folder, exist_ok=True)

    def seed(partial: str) -> None:
        asyncio.run(bulk_seed.migrate(f"sqlite:///{partial}"))
        asyncio.run(seed_devices(f"sqlite:///{partial}", devices, secrets.token_hex(4)))
        db = sqlite3.connect(partial)  # everything into the one file, so a copy is the database
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()

    bulk_seed.copy_of_seeded(
        os.path.join(folder, f"registry-{devices}d-{bulk_seed.schema_version()}.db"), path, seed)


def create_users(database: str, env: dict, role: str, run_id: str) -> list[tuple[str, str]]:
    """(id, email) of USERS_PER_ROLE new users, created with `owlmetry users create`."""
    emails = [f"{role}{i}-{run_id}@bench.example" for i in range(USERS_PER_ROLE)]
    pool = concurrent.futures.ThreadPoolExecutor(8)
    try:
        ids = pool.map(lambda email: harness.owlmetry_cli("users", "create", email,
                                                          "--database", database, env=env),
                       emails)
        return list(zip(ids, emails))
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, start no more


def write_jwts(path: str, users: list[tuple[str, str]], secret: str) -> None:
    pairs = "".join(f"{user_id} {email}\n" for user_id, email in users)
    done = subprocess.run([sys.executable, f"{BENCH}/mint_jwt.py", "--secret", secret,
                           "--batch", "-"],
                          input=pairs, capture_output=True, text=True, check=True, timeout=60)
    with open(path, "w") as out:
        out.write(done.stdout)


def seed(url: str, files: dict) -> None:
    subprocess.run([sys.executable, f"{BENCH}/seed_devices.py", "--base-url", url,
                    "--jwt-file", files["writers"], "--list-jwt-file", files["listers"],
                    "--tokens-file", files["tokens"], "--channel", "ios_push", "--platform", ""],
                   check=True, timeout=180, stdout=subprocess.DEVNULL)


def system_seconds(pid: int) -> float:
    """The kernel's part of a process's CPU (stime): SQLite's file I/O shows here."""
    return int(harness._stat_fields(f"/proc/{pid}/stat")[12]) / os.sysconf("SC_CLK_TCK")


# How the wrk scripts register a device on our server: the seed's channel, no platform.
OUR_CHANNEL = ("ios_push", "none")


def run_wrk(url: str, scenario: str, duration: str, files: dict, pid: int | None = None,
            db_pid: int | None = None, channel: tuple[str, str] = OUR_CHANNEL) -> dict:
    """wrk's summary, with the server's CPU per request (µs) when its `pid` is given, and
    PostgreSQL's (its postmaster's processes) when `db_pid` is. `channel`: the CHANNEL and
    PLATFORM the scripts register devices with."""
    env = dict(os.environ, JWT_FILE=files["writers"], LIST_JWT_FILE=files["listers"],
               TOKENS_FILE=files["tokens"], CHANNEL=channel[0], PLATFORM=channel[1])
    cpu_before = harness.cpu_seconds(pid) if pid else 0.0
    sys_before = system_seconds(pid) if pid else 0.0
    db_before = harness.exact_tree_cpu(db_pid) if db_pid else {}
    done = subprocess.run(
        ["taskset", "-c", WRK_CORE, "wrk", "-t1", "-c64", f"-d{duration}", "--timeout", "10s",
         "-s", f"{BENCH}/wrk/{scenario}.lua", url],
        env=env, capture_output=True, text=True, check=True, timeout=seconds(duration) + 60,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no WRK_JSON line from wrk:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("WRK_JSON "))
    requests = max(result["requests"], 1)
    if pid:
        result["cpu_us"] = round(1e6 * (harness.cpu_seconds(pid) - cpu_before) / requests, 1)
        result["sys_us"] = round(1e6 * (system_seconds(pid) - sys_before) / requests, 1)
    if db_pid:
        db_cpu = harness.cpu_between(db_before, harness.exact_tree_cpu(db_pid))
        result["db_us"] = round(1e6 * db_cpu / requests, 1)
    return result


def spread(values: list) -> dict:
    """Median, min and max of a figure over the runs (None where it was not measured)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(backend: str, devices: int, scenario: str, runs: list[dict]) -> dict:
    """The run with the median requests/s; errors summed over all runs; every run's requests/s
    and CPU in run order (in --alternate mode, run k of each size is the same round)."""
    median = statistics.median_low(run["rps"] for run in runs)
    chosen = next(run for run in runs if run["rps"] == median)
    socket_errors = sum(run[k] for run in runs
                        for k in ("connect_err", "read_err", "write_err", "timeout"))
    return {
        "backend": backend, "seeded_devices": devices, "scenario": scenario, "runs": len(runs),
        "rps": chosen["rps"], "p50_ms": chosen["p50_ms"], "p99_ms": chosen["p99_ms"],
        "cpu_us": chosen.get("cpu_us"), "sys_us": chosen.get("sys_us"),
        "db_us": chosen.get("db_us"),
        "non2xx": sum(run["non2xx"] for run in runs), "socket_errors": socket_errors,
        "ratio": round(chosen["rps"] / REFERENCE_RPS[scenario], 2),
        "all_rps": [run["rps"] for run in runs], "all_cpu_us": [run.get("cpu_us") for run in runs],
        "all_sys_us": [run.get("sys_us") for run in runs],
        "all_db_us": [run.get("db_us") for run in runs],
        "load_1m": [run["load_1m"] for run in runs],
    }


def profile(pid: int, scenario: str, backend: str, duration: str, url: str, files: dict,
            out_dir: str):
    """One extra wrk run with py-spy sampling the server; writes collapsed stacks
    (flamegraph.pl input)."""
    out = os.path.join(out_dir, f"{backend}-{scenario}.txt")
    with profiling.py_spy_recording(pid, out, "--nonblocking",
                                    "--duration", str(seconds(duration))):
        result = run_wrk(url, scenario, duration, files)
    print(f"[{backend}] {scenario} under py-spy: {result['rps']:.0f} req/s -> {out}",
          file=sys.stderr)


@dataclasses.dataclass
class Target:
    """One size's running server, ready for wrk."""
    backend: str
    devices: int
    url: str
    pid: int | None  # None: its CPU is not measured (a server not ours, no pid given)
    db_pid: int | None
    files: dict
    code: str
    channel: tuple[str, str] = OUR_CHANNEL


@contextlib.contextmanager
def serving(backend: str, database: str, devices: int, work: str, seeded: bool = False,
            db_pid: int | None = None, statements: dict | None = None):
    """A Target on `database`: migrated, seeded with `devices` devices unless `seeded`, the
    benchmark's users and refresh tokens in, its server running. With `statements`, the server
    runs under the statement timer, and its figures go into statements[(backend, devices)] once
    it stopped."""
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ, JWT_SECRET=secret)
    env.pop("ACCESS_LOG", None)
    run_id = secrets.token_hex(4)
    files = {name: os.path.join(work, f"{backend}-{devices}-{name}.txt")
             for name in ("writers", "listers", "tokens")}
    print(f"[{backend} {devices:,}] migrate, create {2 * USERS_PER_ROLE} users, seed",
          file=sys.stderr)
    harness.owlmetry_cli("migrate", "--database", database, env=env)
    if devices and not seeded:
        print(f"[{backend}] seed {devices:,} devices", file=sys.stderr)
        asyncio.run(seed_devices(database, devices, run_id))
    write_jwts(files["writers"], create_users(database, env, "writer", run_id), secret)
    write_jwts(files["listers"], create_users(database, env, "lister", run_id), secret)
    version = harness.code_version()  # the server imports the package now; later edits miss it
    log = os.path.join(work, f"{backend}-{devices}-server.log")
    timed = os.path.join(work, f"{backend}-{devices}-statements.json")
    launcher = profiling.statement_timer_launcher(timed) if statements is not None else None
    with harness.running_server(database, env, log, *([launcher] if launcher else [])) as (
            url, pid):
        seed(url, files)
        yield Target(backend, devices, url, pid, db_pid, files, version)
    if statements is not None:
        with open(timed) as f:
            statements[(backend, devices)] = json.load(f)


def measure(target: Target, scenario: str, duration: str, label: str) -> dict:
    run = run_wrk(target.url, scenario, duration, target.files, target.pid, target.db_pid,
                  target.channel)
    run["load_1m"] = os.getloadavg()[0]  # other work on the machine skews figures
    cpu = (f", {run['cpu_us']:.0f} µs CPU/request ({run['sys_us']:.0f} in the kernel)"
           if target.pid else "")
    db = f", database {run['db_us']:.0f} µs/request" if run.get("db_us") is not None else ""
    print(f"[{target.backend} {target.devices:,}] {scenario} {label}: {run['rps']:.0f} req/s"
          f"{cpu}{db}, non-2xx {run['non2xx']}, load average {run['load_1m']:.1f}",
          file=sys.stderr)
    return run


def bench_backend(target: Target, args) -> list[dict]:
    results = []
    for scenario in args.scenarios:
        runs = [measure(target, scenario, args.duration, f"run {n + 1}/{args.runs}")
                for n in range(args.runs)]
        results.append(summarize(target.backend, target.devices, scenario, runs)
                       | {"code": target.code})
        if args.py_spy:
            profile(target.pid, scenario, target.backend, args.duration, target.url,
                    target.files, args.py_spy)
    return results


def bench_alternating(targets: list[Target], args) -> list[dict]:
    """Every size's server up at once; per scenario, `args.alternate` rounds of one run per
    size, the order reversed every other round (ABBA), so each size sees the same minutes of
    the machine and a round's ratio compares neighbouring runs."""
    runs = {target.devices: {} for target in targets}
    for scenario in args.scenarios:
        for n in range(args.alternate):
            for target in (targets if n % 2 == 0 else targets[::-1]):
                runs[target.devices].setdefault(scenario, []).append(
                    measure(target, scenario, args.duration, f"round {n + 1}/{args.alternate}"))
    return [summarize(target.backend, target.devices, scenario, runs[target.devices][scenario])
            | {"code": target.code}
            for target in targets for scenario in args.scenarios]


def print_report(results: list[dict]) -> None:
    for backend, version in dict.fromkeys((r["backend"], r["code"]) for r in results):
        print(f"code ({backend}): {version}")
    print()
    print("| backend | devices before | scenario | requests/s | p50 ms | p99 ms | server CPU µs/req "
          "(kernel) | non-2xx | × reference |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['backend']} | {r['seeded_devices']:,} | {r['scenario']} | {r['rps']:,.0f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_us']:.0f} ({r['sys_us']:.0f}) | "
              f"{r['non2xx']} | "
              f"{r['ratio']:.2f} (ref {REFERENCE_RPS[r['scenario']]:,}) |")
    print()
    print_ratios(results)
    for r in results:
        print(json.dumps(r))
    bad = [r for r in results if r["non2xx"] or r["socket_errors"]]
    for r in bad:
        print(f"!!! ERRORS: {r['backend']} {r['scenario']}: {r['non2xx']} non-2xx responses, "
              f"{r['socket_errors']} socket errors !!!", file=sys.stderr)


def ratios(results: list[dict]) -> dict:
    """{(label, devices or backend, scenario): ratio}: SQLite / PostgreSQL per size and scenario,
    and each size / the empty database per backend and scenario, where both were run."""
    rps = {(r["backend"], r["seeded_devices"], r["scenario"]): r["rps"] for r in results}
    found = {}
    for (backend, devices, scenario), value in rps.items():
        postgresql = rps.get(("postgresql", devices, scenario))
        if backend == "sqlite" and postgresql:
            found[("sqlite/postgresql", devices, scenario)] = value / postgresql
        empty = rps.get((backend, 0, scenario))
        if devices and empty:
            found[(f"{devices:,} devices/empty", backend, scenario)] = value / empty
    return found


def print_ratios(results: list[dict]) -> None:
    """Ratios within this run, which the hour's load moves much less than the figures."""
    found = ratios(results)
    if not found:
        return
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    rows = list(dict.fromkeys(key[:2] for key in found))
    print("| ratio (same run) | of | " + " | ".join(scenarios) + " |")
    print("|---|---|" + "---:|" * len(scenarios))
    for label, of in rows:
        cells = [f"{found[(label, of, s)]:.2f}" if (label, of, s) in found else "" for s in scenarios]
        of = f"{of:,} devices" if isinstance(of, int) else of
        print(f"| {label} | {of} | " + " | ".join(cells) + " |")
    print()


def figure(values: dict, digits: int = 0) -> str:
    """"median (min–max)" of a spread()."""
    if values["median"] is None:
        return "–"
    return (f"{values['median']:,.{digits}f} ({values['min']:,.{digits}f}–"
            f"{values['max']:,.{digits}f})")


def round_ratios(at_size: list, empty: list) -> list:
    return [a / e for a, e in zip(at_size, empty) if a is not None and e]


def print_alternation(results: list[dict]) -> None:
    """--alternate: per backend, scenario and size, the median and range over the rounds, and
    each round's size / empty ratio (neighbouring runs) as median and range: by requests/s and
    by the server's CPU per request (and PostgreSQL's), the latter robust to the host's load."""
    by_key = {(r["backend"], r["seeded_devices"], r["scenario"]): r for r in results}
    print("| backend | devices | scenario | rounds | requests/s | server CPU µs/req | kernel µs/req "
          "| database CPU µs/req | × empty, req/s | × empty, server CPU | × empty, database CPU |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (backend, devices, scenario), r in by_key.items():
        empty = by_key.get((backend, 0, scenario)) if devices else None
        ratio_cells = ["", "", ""]
        if empty:
            ratio_cells = [figure(spread(round_ratios(r[key], empty[key])), 2)
                           for key in ("all_rps", "all_cpu_us", "all_db_us")]
        print(f"| {backend} | {devices:,} | {scenario} | {r['runs']} | "
              f"{figure(spread(r['all_rps']))} | {figure(spread(r['all_cpu_us']))} | "
              f"{figure(spread(r['all_sys_us']))} | {figure(spread(r['all_db_us']))} | "
              + " | ".join(ratio_cells) + " |")
    print()


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh]?)", duration)
    if not match:
        raise argparse.ArgumentTypeError(f"not a wrk duration (e.g. 20s, 1m): {duration!r}")
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def wrk_duration(text: str) -> str:
    """An argparse type: `text` if it is a wrk duration (a clear error otherwise)."""
    seconds(text)
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--duration", default="20s", type=wrk_duration,
                        help="wrk -d per run (default 20s)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per scenario; the median is reported")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--postgres-url",
                        help="use this (empty, dedicated) database instead of a throwaway cluster")
    parser.add_argument("--seed-devices", type=int, nargs="+", default=[0], metavar="N",
                        help="devices in the database before the runs, one fresh database per "
                             "N (default 0; e.g. 0 1000000)")
    parser.add_argument("--seed-cache", metavar="DIR",
                        help="keep SQLite's seeded databases in DIR for later invocations")
    parser.add_argument("--alternate", type=int, metavar="ROUNDS", default=0,
                        help="every size's server up at once, ROUNDS rounds per scenario of one "
                             "run per size (order ABBA); reports median and range, and each "
                             "round's size / empty ratio (instead of --runs)")
    parser.add_argument("--statements", action="store_true",
                        help="servers under the statement timer; prints each size's statements")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="after each scenario, profile one extra run into DIR")
    parser.add_argument("--time-limit", type=int, metavar="SECONDS",
                        help="abort (cleaning up) after this long "
                             "(default: estimated from the other flags, per backend once it "
                             "holds the lock)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.alternate < 0:
        parser.error("--runs must be at least 1, --alternate at least 0")
    if args.alternate and (args.py_spy or args.postgres_url):
        parser.error("--alternate takes neither --py-spy nor --postgres-url")
    if args.postgres_url and len(args.seed_devices) > 1:
        parser.error("--postgres-url is one database: give one --seed-devices size with it")
    return args


def time_limit(args, backends: list[str]) -> int:
    runs = args.alternate or args.runs
    wrk_runs = len(args.scenarios) * (runs + (1 if args.py_spy else 0))
    per_size = SETUP_SECONDS + wrk_runs * (seconds(args.duration) + 15)
    seeding = sum(args.seed_devices) // SEED_DEVICES_PER_SECOND
    return len(backends) * (len(args.seed_devices) * per_size + seeding)


@contextlib.contextmanager
def database_for(backend: str, devices: int, work: str, seed_cache: str | None = None,
                 postgres_url: str | None = None):
    """(URL, already seeded?, PostgreSQL's postmaster pid or None) of a fresh database for one
    size, removed afterwards: SQLite's seeded from `seed_cache` if given, PostgreSQL's the
    database at `postgres_url` if given, else one in a new throwaway cluster."""
    if backend == "sqlite":
        path = os.path.join(work, f"bench-{devices}.db")
        seeded = bool(devices and seed_cache)
        try:
            if seeded:
                print(f"[{backend}] {devices:,} devices from {seed_cache}", file=sys.stderr)
                cached_sqlite_seed(seed_cache, devices, path)
            yield f"sqlite:///{path}", seeded, None
        finally:  # a million devices are half a gigabyte
            for side in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + side)
        return
    with postgres_database(postgres_url) as (database, postmaster):
        yield database, False, postmaster


def bench_sizes(backend: str, args, work: str, statements: dict | None) -> list[dict]:
    def fresh_database(devices: int):
        return database_for(backend, devices, work, args.seed_cache, args.postgres_url)

    if not args.alternate:
        results = []
        for devices in args.seed_devices:
            with fresh_database(devices) as (database, seeded, db_pid), \
                    serving(backend, database, devices, work, seeded, db_pid,
                            statements) as target:
                results += bench_backend(target, args)
        return results
    with contextlib.ExitStack() as stack:
        targets = []
        for devices in args.seed_devices:
            database, seeded, db_pid = stack.enter_context(fresh_database(devices))
            targets.append(stack.enter_context(
                serving(backend, database, devices, work, seeded, db_pid, statements)))
        return bench_alternating(targets, args)


def print_statements(statements: dict) -> None:
    """--statements: per backend and size, the server's statements over all its runs (the
    seeding's requests included)."""
    for (backend, devices), timed in statements.items():
        print(f"statements, {backend}, {devices:,} devices:")
        print(profiling.statements_table(timed))
        print()


def main(argv=None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.py_spy:
        os.makedirs(args.py_spy, exist_ok=True)
    harness.stop_on_signals(args.time_limit or time_limit(args, backends))
    results = []
    statements = {} if args.statements else None
    with tempfile.TemporaryDirectory(prefix="owlbench-") as work:
        # A backend's sizes in one hold of the lock: the at-size / empty ratios (issue 15's
        # within 20%) then compare the same minutes of the machine, no other benchmark between.
        for backend in backends:
            if not args.time_limit:  # the estimate is of the work, not of the wait for the lock
                signal.alarm(0)
            with harness.bench_lock():
                if not args.time_limit:
                    signal.alarm(time_limit(args, [backend]))
                results += bench_sizes(backend, args, work, statements)
    signal.alarm(0)
    print_report(results)
    if args.alternate:
        print_alternation(results)
    if statements:
        print_statements(statements)
    return 1 if any(r["non2xx"] or r["socket_errors"] for r in results) else 0


if __name__ == "__main__":
    harness.run_main(main)
