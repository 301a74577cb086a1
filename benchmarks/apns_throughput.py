#!/usr/bin/env python3
"""Throughput of the APNs pool against a mock APNs: N pushes to N distinct tokens, C at a time.

    python benchmarks/apns_throughput.py --url https://127.0.0.1:18443 --ca mock-cert.pem \
        --count 50000 --concurrency 1000 [--connections 1]

Prints one JSON line {"peer", "count", "ok", "failed", "seconds", "per_second", ...} like the
peers of the shared APNs benchmark harness (run_peers.sh passes the same flags via PROJECT_CMD).
"""

import argparse
import asyncio
import json
import os
import resource
import time
from collections import Counter

import harness
from harness import APNS_HARNESS, apns_token
from owlmetry.apns import APNsClient

PAYLOAD = {"aps": {"alert": {"title": "t", "body": "b"}, "badge": 1, "sound": "default"}}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="https://127.0.0.1:18443")
    ap.add_argument("--ca", default=os.path.join(APNS_HARNESS, "mock-cert.pem"))
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--key", default=os.path.join(APNS_HARNESS, "apns-auth-key.p8"))
    ap.add_argument("--key-id", default=harness.KEY_ID)
    ap.add_argument("--team-id", default=harness.TEAM_ID)
    ap.add_argument("--topic", default=harness.TOPIC)
    ap.add_argument("--peer", default="owlmetry")
    ap.add_argument("--no-uvloop", action="store_true")
    return ap.parse_args()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run(a, key: str) -> dict:
    errors: Counter = Counter()
    ok = 0
    next_index = iter(range(a.count))
    client = APNsClient(a.key_id, a.team_id, key, a.topic, production_url=a.url, ca_file=a.ca,
                        connections=a.connections,
                        max_streams_per_connection=-(-a.concurrency // a.connections))

    async def worker():
        nonlocal ok
        send = client.send
        for i in next_index:
            result = await send(apns_token(i), PAYLOAD)
            if result.ok:
                ok += 1
            else:
                errors[f"{result.status} {result.reason}"] += 1

    t0, c0 = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(worker() for _ in range(min(a.concurrency, a.count))))
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    await client.close()
    out = {"peer": a.peer, "count": a.count, "ok": ok, "failed": a.count - ok,
           "seconds": round(seconds, 4), "per_second": round(ok / seconds, 1),
           "cpu_seconds_in_window": round(cpu, 3), "connections": a.connections}
    if errors:
        out["errors"] = dict(errors.most_common(8))
    return out


def main() -> None:
    a = parse_args()
    runner = harness.event_loop_runner(not a.no_uvloop)
    with open(a.key) as f:
        key = f.read()
    print(json.dumps(runner(run(a, key))), flush=True)


if __name__ == "__main__":
    main()
