"""The registry beside the Owlmetry reference server, run for run: issue 11's "5x / 3x the
reference", measured so that each ratio compares runs seconds apart, not rounds minutes apart.

The reference (github owlmetry/owlmetry's server) runs already, started by the caller pinned to
core 0 as `registry.py` pins ours, on its own PostgreSQL, seeded with the shared
`seed_devices.py` (`--channel mobile_push --platform ios`, as today's server requires), its
users' JWTs and the refresh tokens in the files given. This script builds our servers as
`registry.py` does (a fresh database per backend, 200 users, the same seeding), all up at once,
then per scenario, after an uncounted warm-up run of each server, runs wrk in the order

    reference, ours 1, reference, ours 2, reference, ours 1, reference, ...

(`--rounds` runs of each of ours), so every run of ours has a reference run just before and
just after it. Each run of ours is divided by the mean of those two: the ratio of that minute
of the machine. Prints, per backend and scenario, the median and range of those ratios, of
both sides' requests/s, and of our server's CPU per request (and the reference's, with
`--reference-pid`); one JSON line each. Holds /tmp/owl-bench.lock throughout. How the reference
was built and started: benchmarks/RESULTS.md, session 17.

    python benchmarks/registry_vs_reference.py --reference http://127.0.0.1:4100 \\
        --reference-files jwt_r.txt jwt_l.txt tokens.txt [--reference-pid PID] \\
        [--backend sqlite|postgresql|both] [--rounds 3] [--duration 20s] [--scenarios ...]
"""

import argparse
import contextlib
import json
import os
import statistics
import tempfile
from typing import NamedTuple

import harness
import registry
from registry import Target

GOALS = {"sqlite": 5.0, "postgresql": 3.0}  # issue 11: times the reference's requests/s


class Sandwich(NamedTuple):
    """One run of ours between two of the reference's."""
    run: dict
    ratio: float  # its requests/s over the mean of the two reference runs'
    before: dict
    after: dict


def sandwiched(reference: Target, ours: list[Target], scenario: str, args) -> dict:
    """{backend: [Sandwich]} for one scenario,
    after a warm-up run of each server (not counted: a server's first run of a scenario, the
    reference's most, runs slower than its next ones)."""
    for target in (reference, *ours):
        registry.measure(target, scenario, args.warmup, "warm-up")
    order = [reference]
    for _ in range(args.rounds):
        for target in ours:
            order += [target, reference]
    runs = [registry.measure(target, scenario, args.duration, f"run {n + 1}/{len(order)}")
            for n, target in enumerate(order)]
    found = {target.backend: [] for target in ours}
    for n in range(1, len(order), 2):
        around = statistics.mean([runs[n - 1]["rps"], runs[n + 1]["rps"]])
        found[order[n].backend].append(Sandwich(runs[n], runs[n]["rps"] / around,
                                                runs[n - 1], runs[n + 1]))
    return found


def summary(backend: str, scenario: str, sandwiches: list[Sandwich], code: str) -> dict:
    ours = [s.run for s in sandwiches]
    references = [run for s in sandwiches for run in (s.before, s.after)]
    return {
        "backend": backend, "scenario": scenario, "rounds": len(sandwiches), "code": code,
        "ratio": registry.spread([round(s.ratio, 2) for s in sandwiches]),
        "goal": GOALS[backend],
        "rps": registry.spread([run["rps"] for run in ours]),
        "reference_rps": registry.spread([run["rps"] for run in references]),
        "cpu_us": registry.spread([run.get("cpu_us") for run in ours]),
        "reference_cpu_us": registry.spread([run.get("cpu_us") for run in references]),
        "non2xx": sum(run["non2xx"] for run in ours),
        "reference_non2xx": sum(run["non2xx"] for run in references),
    }


def print_summaries(summaries: list[dict]) -> None:
    print("| backend | scenario | rounds | × reference, each run / the reference runs either "
          "side | goal | ours req/s | reference req/s | ours CPU µs/req | reference CPU µs/req "
          "| non-2xx (ours / reference) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in summaries:
        print(f"| {s['backend']} | {s['scenario']} | {s['rounds']} | "
              f"**{registry.figure(s['ratio'], 2)}** | {s['goal']:g}× | "
              f"{registry.figure(s['rps'])} | {registry.figure(s['reference_rps'])} | "
              f"{registry.figure(s['cpu_us'])} | {registry.figure(s['reference_cpu_us'])} | "
              f"{s['non2xx']} / {s['reference_non2xx']} |")
    print()
    for s in summaries:
        print(json.dumps(s))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, metavar="URL",
                        help="the running Owlmetry reference server, e.g. http://127.0.0.1:4100")
    parser.add_argument("--reference-files", required=True, nargs=3,
                        metavar=("WRITER_JWTS", "LISTER_JWTS", "TOKENS"),
                        help="the reference's writers' and listers' JWTs and its refresh "
                             "tokens, as seed_devices.py and mint_jwt.py wrote them")
    parser.add_argument("--reference-pid", type=int,
                        help="the reference server's process, to report its CPU per request")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each of ours per scenario")
    parser.add_argument("--duration", default="20s", type=registry.wrk_duration,
                        help="wrk -d per run (default 20s)")
    parser.add_argument("--warmup", default="5s", type=registry.wrk_duration,
                        help="wrk -d of each server's uncounted first run per scenario")
    parser.add_argument("--scenarios", nargs="+", choices=registry.SCENARIOS,
                        default=list(registry.SCENARIOS))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    for path in args.reference_files:
        if not os.path.isfile(path):
            parser.error(f"--reference-files: no such file: {path}")
    if args.reference_pid is not None and not os.path.exists(f"/proc/{args.reference_pid}"):
        parser.error(f"--reference-pid: no process {args.reference_pid}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    wrk_runs = len(args.scenarios) * (1 + 2 * args.rounds * len(backends))
    warmups = len(args.scenarios) * (1 + len(backends))
    harness.stop_on_signals(len(backends) * registry.SETUP_SECONDS
                            + wrk_runs * (registry.seconds(args.duration) + 15)
                            + warmups * (registry.seconds(args.warmup) + 15))
    writers, listers, tokens = args.reference_files
    reference = Target("reference", 0, args.reference.rstrip("/"), args.reference_pid, None,
                       {"writers": writers, "listers": listers, "tokens": tokens}, "reference",
                       channel=("mobile_push", "ios"))
    summaries = []
    with tempfile.TemporaryDirectory(prefix="owlbench-") as work, harness.bench_lock(), \
            contextlib.ExitStack() as stack:
        ours = []
        for backend in backends:
            database, seeded, db_pid = stack.enter_context(
                registry.database_for(backend, 0, work))
            ours.append(stack.enter_context(
                registry.serving(backend, database, 0, work, seeded, db_pid)))
        for scenario in args.scenarios:
            found = sandwiched(reference, ours, scenario, args)
            summaries += [summary(target.backend, scenario, found[target.backend], target.code)
                          for target in ours]
    print_summaries(summaries)
    return 1 if any(s["non2xx"] or s["reference_non2xx"] for s in summaries) else 0


if __name__ == "__main__":
    harness.run_main(main)
