"""The inbox at size: milliseconds per request for one user with a big inbox (issue 15's goal:
list, unread-count and mark-all-read under 20 ms each at 100,000 notifications).

Per backend, a fresh database (SQLite: a temp file; PostgreSQL: a throwaway cluster, or the
empty database named by --postgres-url) gets one user made with `owlmetry users create`, and
--notifications notifications for that user written with `store.execute_batch` (each its own
content, one a second, newest last, uuid7 ids as the enqueue makes them), of which --unread are
unread, the rest read: the newest ones (`--unread-at newest`, the default: what an inbox holds
between two mark-all-reads) or spread evenly from the newest to the oldest (`spread`, the worst
place for a reader that walks the inbox newest first: only rows marked unread again, or read
one by one, leave old unread ones behind); their unread count as the enqueue keeps it; then
ANALYZE (PostgreSQL: VACUUM ANALYZE). Not timed. The server runs on core 0, this client on
core 1, over one keep-alive connection; each request is timed on the client:

- `list`: GET /v1/notifications (the first page, 50), --repeat times;
- `list unread`: GET /v1/notifications?read_state=unread, --repeat times;
- `list every page`: the whole inbox paged with the cursor, 200 a page (each page one sample);
- `unread-count`: GET /v1/notifications/unread-count, --repeat times;
- `mark-all-read`: POST /v1/notifications/mark-all-read, --repeat times; before each (not
  timed) the same --unread notifications are made unread again, and their count with them.

Around each request the CPU time of the server process and (PostgreSQL) of the cluster's
processes is read from /proc (schedstat: exact): their CPU per request, which the host's load moves less than
the milliseconds (SQLite's work is the server's own).

Prints one markdown table (median, p90, max ms, and CPU ms per request, per operation and
backend) and one JSON line per (backend, operation); exit status 1 when an answer is not 200
or says a wrong count. Holds /tmp/owl-bench.lock (flock) per backend, like the other
benchmarks. With --postgres-url the database's CPU is not read (its processes are not ours).

    python benchmarks/inbox.py [--backend sqlite|postgresql|both] [--notifications 100000]
        [--unread 100] [--unread-at newest|spread] [--repeat 50] [--postgres-url URL]
"""

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import time

import harness
from owlmetry.clock import now_ms
from owlmetry.ids import new_ordered_id
from owlmetry.store import open_store

ROWS_PER_STATEMENT = 50_000
GOAL_MS = 20
TYPES = ("issue.new", "issue.comment", "build.failed", "digest.weekly")

INSERT_CONTENTS = """
WITH batch (id, type, title, body) AS ({batch})
INSERT INTO notification_contents (id, type, title, body, link)
SELECT id, type, title, body, 'https://example.com/issues/1' FROM batch
"""
INSERT_NOTIFICATIONS = """
WITH batch (id, user_id, content_id, read_at, created_at) AS ({batch})
INSERT INTO notifications (id, user_id, content_id, read_at, created_at)
SELECT id, user_id, content_id, read_at, created_at FROM batch
"""
SET_UNREAD_COUNT = """
INSERT INTO unread_counts (user_id, unread) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET unread = excluded.unread
"""
# The benchmark's --unread rows, unread again (between the timed mark-all-reads).
MAKE_UNREAD = """
WITH batch (id) AS ({batch})
UPDATE notifications SET read_at = NULL WHERE id IN (SELECT id FROM batch)
"""


async def seed(database: str, user_id: str, n: int, unread: int, spread: bool) -> list[str]:
    """`n` notifications of the user, `unread` of them unread (the newest, or spread evenly);
    the unread ones' ids."""
    store = await open_store(database)
    try:
        start = now_ms() - n * 1000
        every = (max(n // unread, 1) if spread else 1) if unread else 0
        unread_ids = []
        for first in range(0, n, ROWS_PER_STATEMENT):
            contents, rows = [], []
            for i in range(first, min(n, first + ROWS_PER_STATEMENT)):
                made = start + i * 1000
                content_id, notification_id = new_ordered_id(made), new_ordered_id(made)
                contents.append((content_id, TYPES[i % len(TYPES)], f"Issue #{i} was opened",
                                 "Something broke in production; see the stack trace."))
                age = n - 1 - i  # 0: the newest
                is_unread = bool(every) and age % every == 0 and age // every < unread
                if is_unread:
                    unread_ids.append(notification_id)
                rows.append((notification_id, user_id, content_id,
                             None if is_unread else made + 60_000, made))
            await store.execute_batch(INSERT_CONTENTS, ("text",) * 4, contents)
            await store.execute_batch(
                INSERT_NOTIFICATIONS, ("text", "text", "text", "bigint", "bigint"), rows)
        await store.execute(SET_UNREAD_COUNT, user_id, len(unread_ids))
        await store.execute("VACUUM ANALYZE" if store.engine.name == "postgresql" else "ANALYZE")
        return unread_ids
    finally:
        await store.close()


async def make_unread(database: str, user_id: str, ids: list[str]) -> None:
    store = await open_store(database)
    try:
        await store.execute_batch(MAKE_UNREAD, ("text",), [(i,) for i in ids])
        await store.execute(SET_UNREAD_COUNT, user_id, len(ids))
    finally:
        await store.close()


class Client:
    """One keep-alive HTTP connection to the server, as the user."""

    def __init__(self, url: str, token: str):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[float, dict]:
        """(ms, the JSON answer); RuntimeError unless 200."""
        payload = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        self.connection.request(method, path, body=payload, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        ms = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return ms, json.loads(data)


class Meter:
    """The milliseconds and the CPU (server, database) of each operation's requests."""

    def __init__(self, client: Client, server_pid: int, db_pid: int | None):
        self.client, self.server_pid, self.db_pid = client, server_pid, db_pid
        self.samples: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def _cpu(self) -> tuple[float, dict[int, float]]:
        return (harness.exact_cpu_seconds(self.server_pid),
                harness.exact_tree_cpu(self.db_pid) if self.db_pid else {})

    def call(self, operation: str, method: str, path: str, body: dict | None = None) -> dict:
        server, db = self._cpu()
        ms, answer = self.client.call(method, path, body)
        server_after, db_after = self._cpu()
        self.samples.setdefault(operation, []).append(ms)
        spent = self.cpu.setdefault(operation, [0.0, 0.0])
        spent[0] += server_after - server
        spent[1] += harness.cpu_between(db, db_after)
        return answer


def measure(meter: Meter, args, database: str, user_id: str, unread_ids: list[str]) -> None:
    """Fills `meter`; RuntimeError on a wrong answer."""
    for _ in range(args.repeat):
        meter.call("list", "GET", "/v1/notifications")
        answer = meter.call("list unread", "GET", "/v1/notifications?read_state=unread")
        if len(answer["notifications"]) != min(50, len(unread_ids)):
            raise RuntimeError(f"unread list: {len(answer['notifications'])} rows")
        answer = meter.call("unread-count", "GET", "/v1/notifications/unread-count")
        if answer["count"] != len(unread_ids):
            raise RuntimeError(f"unread-count {answer['count']}, expected {len(unread_ids)}")
    cursor, listed = None, 0
    while True:
        path = "/v1/notifications?limit=200" + (f"&cursor={cursor}" if cursor else "")
        answer = meter.call("list every page", "GET", path)
        listed += len(answer["notifications"])
        cursor = answer["cursor"]
        if not cursor:
            break
    if listed != args.notifications:
        raise RuntimeError(f"paged through {listed} notifications of {args.notifications}")
    for _ in range(args.repeat):
        asyncio.run(make_unread(database, user_id, unread_ids))
        answer = meter.call("mark-all-read", "POST", "/v1/notifications/mark-all-read", {})
        if answer["marked"] != len(unread_ids):
            raise RuntimeError(f"mark-all-read marked {answer['marked']} of {len(unread_ids)}")


def bench_backend(backend: str, database: str, args, work: str,
                  db_pid: int | None = None) -> list[dict]:
    env = dict(os.environ, JWT_SECRET=secrets.token_urlsafe(32))
    env.pop("ACCESS_LOG", None)
    email = f"inbox-{secrets.token_hex(4)}@bench.example"
    harness.owlmetry_cli("migrate", "--database", database, env=env)
    user_id = harness.owlmetry_cli("users", "create", email, "--database", database, env=env)
    token = harness.owlmetry_cli("users", "token", email, "--database", database, env=env)
    print(f"[{backend}] seed {args.notifications:,} notifications, {args.unread} unread",
          file=sys.stderr)
    unread_ids = asyncio.run(seed(database, user_id, args.notifications, args.unread,
                                  args.unread_at == "spread"))
    version = harness.code_version()
    log = os.path.join(work, f"{backend}.log")
    with harness.running_server(database, env, log) as (url, server_pid):
        with harness.pinned_self(harness.CLIENT_CORE):
            client = Client(url, token)
            client.call("GET", "/v1/notifications")  # warm: connection, caches
            meter = Meter(client, server_pid, db_pid)
            measure(meter, args, database, user_id, unread_ids)
    results = []
    for operation, ms in meter.samples.items():
        server_cpu, db_cpu = meter.cpu[operation]
        ms.sort()
        results.append({
            "backend": backend, "operation": operation, "notifications": args.notifications,
            "unread": len(unread_ids), "unread_at": args.unread_at, "samples": len(ms),
            "median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2),
            "server_cpu_ms": round(server_cpu * 1000 / len(ms), 2),
            "db_cpu_ms": round(db_cpu * 1000 / len(ms), 2) if db_pid else None,
            "load_1m": round(os.getloadavg()[0], 1), "code": version,
        })
    return results


def bench_one(backend: str, args, work: str) -> list[dict]:
    if backend == "sqlite":
        return bench_backend(backend, f"sqlite:///{os.path.join(work, 'inbox.db')}", args, work)
    if args.postgres_url:
        return bench_backend(backend, args.postgres_url, args, work)
    with harness.postgres_cluster() as (cluster, postmaster):
        return bench_backend(backend, harness.create_database(cluster, "inbox"), args, work,
                             postmaster)


def print_report(results: list[dict]) -> None:
    for backend, version in dict.fromkeys((r["backend"], r["code"]) for r in results):
        print(f"code ({backend}): {version}")
    print()
    print(f"| backend | operation | notifications (unread, where) | samples | median ms | p90 ms | "
          f"max ms | under {GOAL_MS} ms (p90) | server CPU ms/req | db CPU ms/req | load |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['backend']} | {r['operation']} | {r['notifications']:,} ({r['unread']}, "
              f"{r['unread_at']}) | "
              f"{r['samples']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['max_ms']:.1f} | "
              f"{'yes' if r['p90_ms'] < GOAL_MS else 'NO'} | {r['server_cpu_ms']:.2f} | "
              f"{'-' if r['db_cpu_ms'] is None else format(r['db_cpu_ms'], '.2f')} | "
              f"{r['load_1m']} |")
    print()
    for r in results:
        print(json.dumps(r))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--unread", type=int, default=100,
                        help="how many of them are unread (spread evenly); default 100")
    parser.add_argument("--unread-at", choices=("newest", "spread"), default="newest",
                        help="which notifications are the unread ones (default: the newest)")
    parser.add_argument("--repeat", type=int, default=50, help="samples per operation")
    parser.add_argument("--postgres-url", help="use this empty database instead of a cluster")
    parser.add_argument("--time-limit", type=int, default=1800, metavar="SECONDS")
    args = parser.parse_args(argv)
    if not 0 <= args.unread <= args.notifications:
        parser.error("--unread must be from 0 to --notifications")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    harness.stop_on_signals(args.time_limit)
    results = []
    with tempfile.TemporaryDirectory(prefix="owlbench-inbox-") as work:
        for backend in backends:
            with harness.bench_lock():
                results += bench_one(backend, args, work)
    print_report(results)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        harness.run_main(main)
