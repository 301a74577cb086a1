#!/usr/bin/env python3
"""What one APNs push costs the server, plain or with every push option (fan-out's `--rich`):
the provider's part of a fan-out in one process, counted in instructions (callgrind), which the
machine's load does not change.

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \
        .venv/bin/python benchmarks/rich_push_cost.py --variant rich --users 2000
    callgrind_annotate /tmp/cg.<pid> | head -40

The server's APNs provider (`owlmetry.notify.providers.apns.APNs`, its real `APNsClient` and
HTTP/2 pool) sends one notification to `--users` recipients with 2 devices each against the
shared harness's Node mock APNs (its own process, pinned to core 1, not counted): per recipient
`prepare` (the payload and headers of one notification), per device `send_soon`, as the
dispatcher does, every answer awaited. A warm-up batch first (connections, provider token);
then callgrind's instrumentation is switched on (`callgrind_control -i on`) for the measured
batch only. Without valgrind it prints the process's CPU seconds for the batch instead (noisy).
Prints one JSON line: variant, pushes, payload and header-block bytes of one push, and
`cpu_s` (without valgrind).
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import harness
from fanout import RICH
from owlmetry.apns import APNsClient
from owlmetry.notify.providers.apns import APNs
from owlmetry.push_options import parse as parse_options
from owlmetry.store import Claim, NotificationContent, PushTarget

WARM_UP_USERS = 200


def content_of(variant: str) -> NotificationContent:
    body = {"type": "bench", "title": "Fan-out", "body": "one notification to every user",
            **(RICH if variant == "rich" else {})}
    return NotificationContent(body["type"], body["title"], body["body"],
                               options=parse_options(body, int(time.time())))


def claims(content: NotificationContent, users: int, first_token: int) -> list[Claim]:
    return [Claim(str(uuid.uuid4()), "mobile_push", 0, str(uuid.uuid4()), content, 3,
                  [PushTarget(str(uuid.uuid4()), harness.apns_token(first_token + 2 * n + d),
                              "production", "ios") for d in range(2)], {})
            for n in range(users)]


async def fan_out(apns: APNs, batch: list[Claim]) -> int:
    """Send every claim's pushes; the number answered 200."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = sum(len(claim.targets) for claim in batch)
    delivered = 0

    def on_answer(answer) -> None:
        nonlocal left, delivered
        left -= 1
        delivered += answer.status == 200
        if not left:
            done.set_result(None)

    for claim in batch:
        prepared = apns.prepare(claim)
        for target in claim.targets:
            apns.send_soon(prepared, target, on_answer)
    await done
    return delivered


def callgrind(switch: str) -> None:
    """Instrumentation on or off, when running under callgrind (else nothing)."""
    if shutil.which("callgrind_control") and "valgrind" in os.environ.get("LD_PRELOAD", ""):
        subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True,
                       stdout=subprocess.DEVNULL)


async def main(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="owlrich-") as work, \
            harness.MockAPNs(os.path.join(work, "mock.log")) as mock:
        with open(mock.auth_key) as key:
            client = APNsClient(harness.KEY_ID, harness.TEAM_ID, key.read(), harness.TOPIC,
                                production_url=mock.url, sandbox_url=mock.url,
                                ca_file=mock.cert, connections=args.connections)
        apns = APNs(client)
        content = content_of(args.variant)
        warm = claims(content, WARM_UP_USERS, 0)
        assert await fan_out(apns, warm) == 2 * WARM_UP_USERS
        batch = claims(content, args.users, 2 * WARM_UP_USERS)
        callgrind("on")
        started = resource.getrusage(resource.RUSAGE_SELF)
        delivered = await fan_out(apns, batch)
        ended = resource.getrusage(resource.RUSAGE_SELF)
        callgrind("off")
        push = apns.prepare(batch[0])
        request = client._prepare(batch[0].targets[0].token, push.body, "production",
                                  topic=None, **push.headers)[1]
        await apns.close()
    assert delivered == 2 * args.users, delivered
    return {"variant": args.variant, "pushes": delivered, "payload_bytes": len(push.body),
            "header_fields_bytes": len(request.path) + len(request.fields),
            "cpu_s": round(ended.ru_utime + ended.ru_stime
                           - started.ru_utime - started.ru_stime, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("plain", "rich"), default="plain")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
    sys.exit(0)
