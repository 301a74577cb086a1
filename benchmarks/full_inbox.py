#!/usr/bin/env python3
"""A full inbox beside an empty one, in one database and one sitting (issue 11): the same
fan-out sent in turn to recipients who have --unread unread notifications each and to as many
recipients who have none, so that the ratio is the inbox's cost and not the host's minute.

    python benchmarks/full_inbox.py [--backend sqlite|postgresql|both] [--users 2000]
        [--devices-per-user 10] [--unread 10000] [--pairs 3] [--beside same|fresh] [--json]

`fanout.py --unread N` compares two databases seeded minutes apart (SQLite's 20 million rows
take eight), and on this host the mock alone moves 2x between such minutes (the pool alone ran
12,400 and 27,100 pushes/s before the two halves of one pair, RESULTS.md "Session 19"). Here
both groups live in one database, seeded as fanout.py seeds (the empty group first, then the
full group and its unread rows, a checkpoint and `sync`): SQLite a file, PostgreSQL a database
in a throwaway cluster with its default durable settings. User ids are random, so the empty
group's users sit among the full group's in the inbox's index, and every recipient's new row
lands on a page of its own in both groups: what differs is the recipients' inboxes, not the
database. One `owlmetry serve` (pinned to core 0, the mock pinned to core 1, as fanout.py) sends
one untimed notification to the empty group (its APNs connections open), then the groups in
turn: empty, full, empty, ..., full, empty (--pairs full sends). Each timed send is fanout.py's
(`timed_fanout`): the mock's counters reset, one POST, the poll until nothing is pending, the
checks (every delivery sent, every device answered 200 exactly once).

`--beside fresh` puts the empty group in a fresh database of its own instead, with a server of
its own (both servers up throughout, each sent an untimed notification first): the comparison
`fanout.py --unread` makes, a big database against a new one, in one sitting.

Each full send's devices/s is divided by the mean of the two empty sends beside it; the
median of those is the ratio (issue 11's goal: within 10%, i.e. at least 0.9). Prints a line
per send on stderr, then a table; --json: one JSON line per backend on stdout. Exit status 1
when a check fails.
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass

import fanout
import harness
from owlmetry.store import open_store


@dataclass
class Group:
    """Recipients sent to as one, and their database."""
    name: str  # "empty" or "full"
    database: str
    user_ids: list[str]


def measure(backend: str, new_database, db_pid: int | None, mock: harness.MockAPNs,
            args, work: str) -> dict:
    """Seed both groups (`new_database(name)` makes an empty database), start a server per
    database, then the sends in turn."""
    per_user = fanout.plan(args.users, 1, args.devices_per_user)
    n_devices = sum(per_user)
    full_database = new_database("inbox")
    empty_database = full_database if args.beside == "same" else new_database("fresh")
    empty = Group("empty", empty_database,
                  asyncio.run(fanout.seed_database(empty_database, per_user)))
    full = Group("full", full_database, asyncio.run(fanout.seed_database(
        full_database, per_user, args.unread, first_token=n_devices)))
    run_args = fanout.parse_args([])
    run_args.fcm = None
    loop = asyncio.new_event_loop()
    sends = []
    try:
        with contextlib.ExitStack() as servers:
            started = {}  # database -> (api key, url, pid, store)
            for group in (empty, full):
                if group.database not in started:
                    started[group.database] = start_server(
                        group.database, mock, args, os.path.join(work, f"{backend}-{group.name}"),
                        servers, loop)
            # Untimed: each server's APNs connections open.
            warm_ups = [empty] + ([full] if args.beside == "fresh" else [])
            order = [empty] + [full, empty] * args.pairs
            for i, group in enumerate(warm_ups + order):
                api_key, url, pid, store = started[group.database]
                run = fanout.timed_fanout(mock, url, pid, db_pid, api_key, group.user_ids, store,
                                          n_devices, run_args, loop)
                run["group"] = group.name if i >= len(warm_ups) else f"warm-up ({group.name})"
                db_cpu = "in process" if db_pid is None else f"{run['db_cpu_s']:.2f} s"
                print(f"[{backend}] {run['group']}: {run['per_second']:,.0f} devices/s, "
                      f"{run['seconds']:.3f} s, POST {run['post_ms']:.0f} ms, first push "
                      f"{run['first_push_ms']:.0f} ms, server CPU {run['server_cpu_s']:.2f} s, "
                      f"DB CPU {db_cpu}, mock CPU {run['mock_cpu_s']:.2f} s "
                      f"{'; '.join(run['problems'])}", file=sys.stderr)
                if i >= len(warm_ups):
                    sends.append(run)
    finally:
        loop.close()
    return summarize(backend, args, len(per_user), n_devices, sends)


def start_server(database: str, mock: harness.MockAPNs, args, log_stem: str,
                 servers: contextlib.ExitStack, loop) -> tuple:
    """A server API key, `owlmetry serve` on `database` (stopped with `servers`) and a store
    to poll it with: (api key, url, pid, store)."""
    api_key = harness.owlmetry_cli("keys", "create", "--kind", "server", "--name", "inbox bench",
                                   "--database", database)
    url, pid = servers.enter_context(harness.running_server(
        database, fanout.server_env(mock, args.connections), f"{log_stem}-server.log"))
    store = loop.run_until_complete(open_store(database))
    servers.callback(lambda: loop.run_until_complete(store.close()))
    return api_key, url, pid, store


def summarize(backend: str, args, n_users: int, n_devices: int, sends: list[dict]) -> dict:
    """Each full send against the mean of the empty sends on either side of it."""
    ratios = [sends[i]["per_second"]
              / statistics.mean([sends[i - 1]["per_second"], sends[i + 1]["per_second"]])
              for i in range(1, len(sends), 2)]
    return {
        "backend": backend, "code": harness.code_version(), "users": n_users,
        "devices": n_devices, "unread_per_user": args.unread, "beside": args.beside,
        "sends": [{"group": r["group"], "devices_per_second": round(r["per_second"], 1),
                   "seconds": round(r["seconds"], 3), "post_ms": round(r["post_ms"], 1),
                   "first_push_ms": round(r["first_push_ms"], 1),
                   "server_cpu_s": round(r["server_cpu_s"], 2),
                   "db_cpu_s": None if r["db_cpu_s"] is None else round(r["db_cpu_s"], 2),
                   "mock_cpu_s": round(r["mock_cpu_s"], 2), "written_mb": r["written_mb"]}
                  for r in sends],
        "ratios": [round(r, 3) for r in ratios],
        "ratio": round(statistics.median(ratios), 3),
        "goal_met": statistics.median(ratios) >= 0.9,
        "problems": [p for r in sends for p in r["problems"]],
    }


def print_table(results: list[dict]) -> None:
    print("| backend | the empty group's database | sends (empty / full devices/s, in turn) | "
          "full / empty beside it | median | goal ≥ 0.9 | checks |")
    print("|---|---|---|---|---:|---|---|")
    for r in results:
        sends = " / ".join(f"{s['devices_per_second']:,.0f}" for s in r["sends"])
        ratios = ", ".join(f"{x:.2f}" for x in r["ratios"])
        checks = "✓" if not r["problems"] else f"{len(r['problems'])} problems"
        where = "the full group's" if r["beside"] == "same" else "a fresh one"
        print(f"| {r['backend']} | {where} | {sends} | {ratios} | {r['ratio']:.2f} | "
              f"{'yes' if r['goal_met'] else 'no'} | {checks} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--users", type=int, default=2000, help="users in each group")
    parser.add_argument("--devices-per-user", type=int, default=10)
    parser.add_argument("--unread", type=int, default=10_000,
                        help="unread notifications of each user of the full group")
    parser.add_argument("--pairs", type=int, default=3, help="timed sends to the full group")
    parser.add_argument("--beside", choices=("same", "fresh"), default="same",
                        help="where the empty group lives: in the full group's database "
                             "(default), or in a fresh database of its own with a server of its "
                             "own (what `fanout.py --unread` compares, here in one sitting)")
    parser.add_argument("--connections", type=int, default=4, help="APNS_CONNECTIONS")
    parser.add_argument("--json", action="store_true", help="one JSON line per backend")
    parser.add_argument("--time-limit", type=int, default=3600,
                        help="abort after this many seconds")
    args = parser.parse_args(argv)
    if args.users < 1 or args.devices_per_user < 1 or args.unread < 1 or args.pairs < 1:
        parser.error("--users, --devices-per-user, --unread and --pairs take at least 1")
    harness.stop_on_signals(args.time_limit)
    results = []
    with tempfile.TemporaryDirectory(prefix="owlinbox-") as work, harness.bench_lock(), \
            harness.MockAPNs(os.path.join(work, "mock.log")) as mock:
        fanout.warm_up(mock, args.users * args.devices_per_user, args.connections)
        for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
            if backend == "sqlite":
                results.append(measure(
                    backend, lambda name: f"sqlite:///{os.path.join(work, name + '.db')}", None,
                    mock, args, work))
            else:
                with harness.postgres_cluster() as (cluster, postmaster):
                    results.append(measure(
                        backend, lambda name: harness.create_database(cluster, name), postmaster,
                        mock, args, work))
            if args.json:
                print(json.dumps(results[-1]), flush=True)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        print_table(results)
    for r in results:
        for problem in r["problems"]:
            print(f"!!! {r['backend']}: {problem}", file=sys.stderr)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    harness.run_main(main)
