#!/usr/bin/env python3
"""Throughput of an FCM client against a mock FCM: N messages to N distinct tokens, C at a time.

    python benchmarks/fcm_throughput.py --count 50000 --concurrency 1000 \
        [--client owlmetry|firebase-admin] [--connections 2]
    python benchmarks/fcm_throughput.py --url https://127.0.0.1:8443 --ca cert.pem \
        --service-account sa.json ...

Without `--url` it starts the project's mock FCM (`python -m owlmetry.fcm.mock
--accept-google-audience`) on a free port, pinned to the other core, with a throwaway
certificate and service account, and reads its counters afterwards (nothing lost, nothing
delivered twice). That mock is Python on one core and saturates first (about 3,500 messages/s):
`--mock node` starts benchmarks/mock_fcm.js instead (Node's HTTP/2; it checks the assertion's
signature, the bearer token and the message's token, nothing else), to measure the client.
With `--url`, `--service-account` must be a file whose token_uri is that mock's.

`--client firebase-admin` measures the Firebase Admin SDK as a user would point it at the mock:
a `credentials.Certificate` from the service-account file (its token_uri is the mock's;
google-auth addresses the assertion to Google's endpoint whatever the file says, hence the
mock's --accept-google-audience), the
module's FCM URL (`messaging._MessagingService.FCM_URL`, the SDK's only endpoint setting) set
to the mock, and the mock's CA trusted through REQUESTS_CA_BUNDLE (google-auth's token
requests) and SSL_CERT_FILE (httpx). It keeps C messages in flight with `send_each_async`
(the SDK's asyncio, HTTP/2 path), one message per call, or with `send` in C threads
(`--firebase-api send`). firebase-admin is not a dependency: `pip install firebase-admin`.

Prints one JSON line {"peer", "count", "ok", "failed", "seconds", "per_second", ...} like
`apns_throughput.py`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter

import harness  # first: puts the repository on sys.path
from owlmetry.fcm import MessageTemplate, parse_service_account  # noqa: E402
from owlmetry.fcm.client import FCMClient  # noqa: E402
from owlmetry.store import NotificationContent  # noqa: E402
from tests.keys import write_tls_files  # noqa: E402

CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote", "/feedback/1",
                              {"feedback_id": "f1"})
NOTIFICATION_ID = "00000000-0000-0000-0000-000000000001"
MOCK_CORE = harness.CLIENT_CORE  # the mock on one core, the client measured on the other
CLIENT_CORE = harness.SERVER_CORE
HERE = os.path.dirname(os.path.abspath(__file__))


def fcm_token(i: int) -> str:
    return f"bench{i}:APA91b" + "Xy_-" * 36


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="a running mock FCM (default: start one)")
    ap.add_argument("--ca", default=None, help="the CA of --url's certificate")
    ap.add_argument("--service-account", default=None, help="with --url: its token_uri is the mock's")
    ap.add_argument("--mock", choices=["python", "node"], default="python",
                    help="without --url: the project's mock FCM (python, the default) or the "
                         "fast one for throughput (node: benchmarks/mock_fcm.js)")
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--client", choices=["owlmetry", "firebase-admin"], default="owlmetry")
    ap.add_argument("--firebase-api", choices=["send_each_async", "send"],
                    default="send_each_async")
    ap.add_argument("--peer", default=None, help="the JSON line's peer (default: --client)")
    ap.add_argument("--no-uvloop", action="store_true")
    a = ap.parse_args()
    if a.url and not (a.ca and a.service_account):
        ap.error("--url needs --ca and --service-account")
    return a


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- the mock -------------------------------------------------------------------------------

@contextlib.contextmanager
def started_mock(kind: str = "python"):
    """A mock FCM in a process of its own, the project's (`python`) or the fast one for
    throughput (`node`, benchmarks/mock_fcm.js): yields (url, ca, service-account file with the
    mock's token_uri, stats URL)."""
    from tests.fcm.identity import rsa_pem, service_account_json

    with tempfile.TemporaryDirectory(prefix="fcm-bench-") as folder:
        cert, key = write_tls_files(folder)
        pem = rsa_pem()
        account_file = os.path.join(folder, "service-account.json")
        with open(account_file, "w") as f:
            f.write(service_account_json(pem))
        stats_port = harness.free_port()
        served = ["--port", "0", "--stats-port", str(stats_port), "--cert", cert, "--key", key,
                  "--service-account", account_file]
        if kind == "node":
            command = ["node", os.path.join(HERE, "mock_fcm.js"), *served]
        else:
            command = [sys.executable, "-m", "owlmetry.fcm.mock", *served,
                       "--accept-google-audience"]
        mock = subprocess.Popen(["taskset", "-c", MOCK_CORE, *command],
                                stdout=subprocess.PIPE, text=True, cwd=harness.REPO)
        try:
            line = json.loads(mock.stdout.readline())
            with open(account_file, "w") as f:  # the client's copy names the mock's endpoint
                f.write(service_account_json(pem, line["token_uri"]))
            yield line["url"], cert, account_file, f"http://127.0.0.1:{stats_port}/stats"
        finally:
            harness.stop_process(mock)


def mock_stats(url: str | None) -> dict:
    if url is None:
        return {}
    with urllib.request.urlopen(url, timeout=10) as response:
        stats = json.loads(response.read())
    return {"mock_delivered": stats["delivered"], "mock_unique": stats["unique_delivered"],
            "mock_duplicates": stats["duplicate_delivered"],
            "mock_connections": stats["connections_opened"],
            "mock_token_requests": stats["token_requests"]}


# ---- the clients ----------------------------------------------------------------------------

async def run_owlmetry(a, url: str, ca: str, account_text: str, results: Counter) -> None:
    account = parse_service_account(account_text)
    client = FCMClient(account, url=url, ca_file=ca, connections=a.connections,
                       max_streams_per_connection=-(-a.concurrency // a.connections))
    template = MessageTemplate(CONTENT)
    next_index = iter(range(a.count))

    async def worker():
        send, render = client.send, template.render
        for i in next_index:
            answer = await send(render(fcm_token(i), NOTIFICATION_ID, 1))
            results[answer.code or "OK"] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(min(a.concurrency, a.count))))
    finally:
        await client.close()


async def run_firebase_admin(a, url: str, ca: str, account_text: str, results: Counter) -> None:
    os.environ["REQUESTS_CA_BUNDLE"] = ca  # google-auth's token requests (requests)
    os.environ["SSL_CERT_FILE"] = ca  # send_each_async (httpx)
    import firebase_admin
    from firebase_admin import credentials, messaging

    messaging._MessagingService.FCM_URL = url + "/v1/projects/{0}/messages:send"
    app = firebase_admin.initialize_app(credentials.Certificate(json.loads(account_text)),
                                        name=f"bench-{os.getpid()}")

    def message(i: int):
        return messaging.Message(
            token=fcm_token(i), notification=messaging.Notification(CONTENT.title, CONTENT.body),
            data={"feedback_id": "f1", "link": CONTENT.link, "type": CONTENT.type,
                  "notification_id": NOTIFICATION_ID},
            android=messaging.AndroidConfig(
                priority="high", ttl=7 * 24 * 3600,
                notification=messaging.AndroidNotification(notification_count=1)))

    next_index = iter(range(a.count))
    if a.firebase_api == "send_each_async":
        async def worker():
            for i in next_index:
                batch = await messaging.send_each_async([message(i)], app=app)
                response = batch.responses[0]
                results["OK" if response.success else type(response.exception).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(min(a.concurrency, a.count))))
    else:
        import concurrent.futures

        def one(i):
            try:
                messaging.send(message(i), app=app)
                return "OK"
            except Exception as exc:  # noqa: BLE001  (counted by kind)
                return type(exc).__name__

        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
            async def worker():
                for i in next_index:
                    results[await loop.run_in_executor(pool, one, i)] += 1

            await asyncio.gather(*(worker() for _ in range(min(a.concurrency, a.count))))
    # (not delete_app: it closes its httpx client with asyncio.run, impossible inside a loop)


async def run(a, url: str, ca: str, account_file: str, stats_url: str | None) -> dict:
    with open(account_file) as f:
        account_text = f.read()
    results: Counter = Counter()
    runner = run_owlmetry if a.client == "owlmetry" else run_firebase_admin
    t0, c0 = time.perf_counter(), cpu_seconds()
    await runner(a, url, ca, account_text, results)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    ok = results.pop("OK", 0)
    out = {"peer": a.peer or a.client, "client": a.client, "count": a.count, "ok": ok,
           "failed": a.count - ok, "seconds": round(seconds, 4),
           "per_second": round(ok / seconds, 1), "cpu_seconds_in_window": round(cpu, 3),
           "connections": a.connections, "concurrency": a.concurrency}
    if a.client == "firebase-admin":
        out["firebase_api"] = a.firebase_api
        del out["connections"]  # the SDK decides
    if results:
        out["errors"] = dict(results.most_common(8))
    out.update(mock_stats(stats_url))
    return out


def main() -> None:
    a = parse_args()
    runner = harness.event_loop_runner(not a.no_uvloop)
    with contextlib.ExitStack() as stack:
        if a.url:
            url, ca, account_file, stats_url = a.url, a.ca, a.service_account, None
        else:
            stack.enter_context(harness.bench_lock())
            url, ca, account_file, stats_url = stack.enter_context(started_mock(a.mock))
            stack.enter_context(harness.pinned_self(CLIENT_CORE))
        print(json.dumps(runner(run(a, url, ca, account_file, stats_url))), flush=True)


if __name__ == "__main__":
    main()
