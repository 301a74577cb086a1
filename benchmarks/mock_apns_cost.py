#!/usr/bin/env python3
"""The project mock APNs' own CPU per request, fault-free and with issue 15's faults: the side
that sets the pace of `hostile_apns.py`, measured without the server and its database.

    python benchmarks/mock_apns_cost.py [--pushes 20000] [--runs 3] [--connections 4] [--json]
        [--py-spy DIR] [--callgrind]

Per run, a pair (fault-free first in even runs, faulty first in odd ones): a fresh mock process
(`python -m owlmetry.apns.mock`, `hostile_apns.py`'s command line and faults) pinned to core 1,
and the project's APNs pool in this process on core 0 sending one push to each of N tokens
(`send_soon`, as the dispatcher does; the pool retries 429/503 and refused streams itself).
Prints the mock's CPU (scheduler's count, exact) per request it judged and the pool's wall time;
with `--py-spy DIR`, the mock sampled by py-spy in every run (its CPU then counts py-spy's
pauses too: compare profiles with profiles) and a summary per run in DIR. With `--callgrind`,
the mock runs under valgrind's callgrind, counted from the first push to the last answer: its
instructions per request, which the host's load does not move (some 50 times slower: use
`--pushes 8000`, which still has every fault; the pool's deadline is raised to match).
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

import harness
import profiling
from harness import SERVER_CORE, apns_token
from hostile_apns import Mock, fault_args
from owlmetry.apns import APNsClient

PAYLOAD = {"aps": {"alert": {"title": "Hostile", "body": "one notification to every user"}}}


async def send_all(url: str, n: int, connections: int, started=None, timeout_s: float = 30.0) -> dict:
    with open(f"{harness.APNS_HARNESS}/apns-auth-key.p8") as f:
        key = f.read()
    client = APNsClient(harness.KEY_ID, harness.TEAM_ID, key, harness.TOPIC, production_url=url,
                        ca_file=f"{harness.APNS_HARNESS}/mock-cert.pem", connections=connections,
                        timeout_s=timeout_s, connect_timeout_s=timeout_s)
    loop = asyncio.get_running_loop()
    done, statuses = loop.create_future(), {}
    left = n

    def on_result(result):
        nonlocal left
        statuses[result.status] = statuses.get(result.status, 0) + 1
        left -= 1
        if not left:
            done.set_result(None)

    try:
        # One push first: the connection and the provider token, not counted in the time.
        await client.send(apns_token(n), PAYLOAD)
        if started is not None:
            started()
        t0 = time.perf_counter()
        for i in range(n):
            client.send_soon(apns_token(i), PAYLOAD, "production", on_result)
        await done
        return {"seconds": time.perf_counter() - t0, "statuses": statuses}
    finally:
        await client.close()


def one(hostile: bool, n: int, connections: int, work: str, tag: str,
        profile: str | None = None, counted: bool = False) -> dict:
    out = f"{work}/callgrind-{tag}.out"
    wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}") if counted else ()
    mock = Mock(fault_args(n) if hostile else [], f"{work}/mock-{tag}.log", wrapper)
    counting = False
    try:
        spy = (profiling.py_spy_recording(mock.proc.pid, profile, "--rate", "200",
                                          "--nonblocking", core=SERVER_CORE)
               if profile else contextlib.nullcontext())
        with harness.pinned_self(SERVER_CORE), spy:
            cpu0 = harness.exact_cpu_seconds(mock.proc.pid)
            if counted:
                def started():
                    nonlocal counting
                    profiling.callgrind("on", mock.proc.pid)
                    counting = True
                run = asyncio.run(send_all(mock.url, n, connections, started, 3600.0))
                profiling.callgrind("off", mock.proc.pid)
                counting = False
            else:
                run = asyncio.run(send_all(mock.url, n, connections))
            mock_cpu = harness.exact_cpu_seconds(mock.proc.pid) - cpu0
        time.sleep(0.2)
        stats = mock.stats()
    finally:
        if counting:
            profiling.callgrind("off", mock.proc.pid)
        mock.stop()
    requests = stats["requests"] - 1  # the warm-up push
    extra = {}
    if counted:
        extra["instructions_per_request"] = round(profiling.instructions(out) / requests)
    return {**extra, "faults": hostile, "pushes": n, "seconds": round(run["seconds"], 3),
            "mock_cpu_s": round(mock_cpu, 3), "mock_requests": requests,
            "mock_us_per_request": round(mock_cpu / requests * 1e6, 1),
            "mock_busy": round(mock_cpu / run["seconds"], 2),
            "answers": run["statuses"], "mock_by_status": stats["responses_by_status"],
            "connections_opened": stats["connections_opened"],
            "duplicates": stats["duplicate_delivered"], "protocol_errors": stats["protocol_errors"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pushes", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="one JSON line per run on stdout")
    ap.add_argument("--py-spy", metavar="DIR", help="sample the mock; profiles into DIR")
    ap.add_argument("--callgrind", action="store_true",
                    help="count the mock's instructions per request (valgrind)")
    args = ap.parse_args(argv)
    harness.stop_on_signals(900)
    runs = {False: [], True: []}
    with harness.bench_lock(), tempfile.TemporaryDirectory(prefix="owl-mockcost-") as work:
        for i in range(args.runs):
            for hostile in ((False, True) if i % 2 == 0 else (True, False)):
                tag = f"{i}-{'faults' if hostile else 'clean'}"
                profile = None
                if args.py_spy:
                    os.makedirs(args.py_spy, exist_ok=True)
                    profile = os.path.join(args.py_spy, f"mock-{tag}.txt")
                run = one(hostile, args.pushes, args.connections, work, tag, profile,
                          args.callgrind)
                if profile:
                    with open(profile + ".summary", "w") as f:
                        f.write(f"{run['mock_cpu_s']} s mock CPU, {run['mock_requests']} "
                                f"requests\n{profiling.summarize_profile(profile, 60)}\n")
                run["load"] = round(os.getloadavg()[0], 2)
                runs[hostile].append(run)
                counted = (f"{run['instructions_per_request']:,} instructions/request, "
                           if args.callgrind else "")
                print(f"run {i + 1} {'faults' if hostile else 'clean '}: mock {counted}"
                      f"{run['mock_us_per_request']} us/request ({run['mock_requests']} requests, "
                      f"{run['mock_cpu_s']} s CPU, {run['mock_busy']} busy), pool "
                      f"{run['seconds']} s, {run['connections_opened']} connections, "
                      f"load {run['load']}", file=sys.stderr)
                if args.json:
                    print(json.dumps(run), flush=True)
    if not args.runs:
        return 0
    if args.callgrind:
        clean = statistics.median(r["instructions_per_request"] for r in runs[False])
        faulty = statistics.median(r["instructions_per_request"] for r in runs[True])
        print(f"mock instructions/request: fault-free {clean:,.0f}, with faults {faulty:,.0f} "
              f"({faulty / clean:.3f}x)")
    clean = statistics.median(r["mock_us_per_request"] for r in runs[False])
    faulty = statistics.median(r["mock_us_per_request"] for r in runs[True])
    clean_s = statistics.median(r["seconds"] for r in runs[False])
    faulty_s = statistics.median(r["seconds"] for r in runs[True])
    print(f"mock us/request: fault-free {clean}, with faults {faulty} ({faulty / clean:.2f}x); "
          f"pool seconds {clean_s} / {faulty_s} (ratio {clean_s / faulty_s:.2f}); "
          f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    harness.run_main(main)
