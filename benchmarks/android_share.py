"""The Android part of a mixed fan-out (`fanout.py --android-share S`, issue 13): which seeded
devices are Android, the fast mock FCM (benchmarks/mock_fcm.js) beside the APNs mock, the
server's FCM settings, FCM's pool alone, and the FCM mock's receipts.

Device i of the seed (in seeding order) is Android when floor((i + 1)·S) > floor(i·S), so the
Android devices are spread evenly over the users (S = 0.5: every other device). iOS devices
keep the harness's tokens `apns_token(0 .. n_ios - 1)` and Android ones get
`fcm_throughput.fcm_token(0 .. n_android - 1)`: the tokens each pool alone sends to. The pool
alone of a mixed run is the slower of the two pools alone, each sending its own share with the
server's limits (APNs: --connections x 1,000 streams; FCM: the server's 2 x 1,000).
Measures nothing by itself.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request

import fcm_throughput
import harness
from owlmetry.store import DeviceRegistration, Platform

HERE = os.path.dirname(os.path.abspath(__file__))
FCM_CONNECTIONS, FCM_STREAMS = 2, 1000  # FCMClient's defaults, which `owlmetry serve` uses


def registrations(n: int, share: float) -> list[DeviceRegistration]:
    """The n seeded devices, in seeding order."""
    out, ios, android = [], 0, 0
    for i in range(n):
        if int((i + 1) * share) > int(i * share):
            out.append(DeviceRegistration("mobile_push", fcm_throughput.fcm_token(android),
                                          "production", "1.0", "Pixel 9", "Android 15",
                                          Platform.ANDROID))
            android += 1
        else:
            out.append(DeviceRegistration("ios_push", harness.apns_token(ios), "production",
                                          "1.0", "iPhone15,3", "iOS 18.2"))
            ios += 1
    return out


def android_count(n: int, share: float) -> int:
    return int(n * share)


class FcmMock:
    """The Node mock FCM of one run: its address, CA, service-account file, counters."""

    def __init__(self, url: str, ca: str, account: str, stats_url: str, share: float):
        self.url, self.ca, self.account, self.share = url, ca, account, share
        self._stats_url = stats_url

    def stats(self) -> dict:
        with urllib.request.urlopen(self._stats_url, timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(self._stats_url.replace("/stats", "/reset"),
                                         method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def server_env(self) -> dict:
        return {"FCM_SERVICE_ACCOUNT_PATH": self.account, "FCM_URL": self.url,
                "FCM_CA_FILE": self.ca}


@contextlib.contextmanager
def fcm_mock(share: float):
    """The mock FCM when `share` > 0 (pinned with the APNs mock), else None."""
    if not share:
        yield None
        return
    with fcm_throughput.started_mock("node") as (url, ca, account, stats_url):
        yield FcmMock(url, ca, account, stats_url, share)


def receipts_problems(stats: dict, n: int) -> list[str]:
    """What is wrong with the FCM mock's counters after n messages to n distinct tokens."""
    problems = []
    if stats["delivered"] != n or stats["unique_delivered"] != n:
        problems.append(f"FCM mock delivered {stats['delivered']} ({stats['unique_delivered']} "
                        f"tokens), expected {n}")
    if stats["duplicate_delivered"]:
        problems.append(f"{stats['duplicate_delivered']} duplicate deliveries at the FCM mock")
    if stats["refused"]:
        problems.append(f"FCM mock refused {stats['refused']} requests")
    return problems


def fcm_pool_alone(fcm: FcmMock, n: int) -> dict:
    """benchmarks/fcm_throughput.py as it is, pinned where the server runs, the server's limits."""
    fcm.reset()
    done = subprocess.run(
        ["taskset", "-c", harness.SERVER_CORE, sys.executable,
         os.path.join(HERE, "fcm_throughput.py"), "--url", fcm.url, "--ca", fcm.ca,
         "--service-account", fcm.account, "--count", str(n),
         "--concurrency", str(FCM_CONNECTIONS * FCM_STREAMS),
         "--connections", str(FCM_CONNECTIONS), "--peer", "fcm-pool-alone"],
        capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    time.sleep(0.3)
    result["problems"] = receipts_problems(fcm.stats(), n) + (
        [f"fcm pool: {result['failed']} failed {result.get('errors')}"] if result["failed"] else [])
    return result


def both_pools_alone(apns_pool_alone, mock, fcm: FcmMock, n_devices: int,
                     connections: int) -> dict:
    """Each pool alone on its share; the figure is the slower one's (`per_second`)."""
    n_android = android_count(n_devices, fcm.share)
    apns = apns_pool_alone(mock, n_devices - n_android, connections)
    fcm_run = fcm_pool_alone(fcm, n_android)
    slower = min(apns, fcm_run, key=lambda r: r["per_second"])
    print(f"  pools alone: APNs {apns['per_second']:,.0f}/s ({n_devices - n_android} pushes), "
          f"FCM {fcm_run['per_second']:,.0f}/s ({n_android} messages)", file=sys.stderr)
    return {**slower, "problems": apns["problems"] + fcm_run["problems"],
            "mock": apns["mock"],
            "pools": {"apns_per_second": apns["per_second"], "apns_count": apns["count"],
                      "apns_cpu_s": apns["cpu_seconds_in_window"],
                      "fcm_per_second": fcm_run["per_second"], "fcm_count": fcm_run["count"],
                      "fcm_cpu_s": fcm_run["cpu_seconds_in_window"]}}


def check_fanout(run: dict, fcm: FcmMock, n_android: int) -> None:
    """Add the FCM mock's receipts of a fan-out to its run: lost, duplicates, problems."""
    stats = fcm.stats()
    run["lost"] += n_android - stats["unique_delivered"]
    run["duplicates"] += stats["duplicate_delivered"]
    run["problems"] += receipts_problems(stats, n_android)
    run["fcm_mock"] = {k: stats[k] for k in ("delivered", "unique_delivered",
                                              "duplicate_delivered", "refused",
                                              "connections_opened", "token_requests")}
