"""`python -m owlmetry.fcm.mock`: the project's testing server, a stand-in for FCM HTTP v1 and
Google's token endpoint (TLS, HTTP/2 and HTTP/1.1 on one port, FCM's rules and error bodies,
faults on demand), in a process of its own. It prints one JSON line, {"mock_fcm": "listening",
"port", "url", "token_uri", "stats_port"}, once it listens; the service account's token_uri
must be that `token_uri` for its clients. Counters on the stats port (plain HTTP/1.1: GET
/stats, POST /reset); exits on SIGTERM or Ctrl-C.
"""

import argparse

from owlmetry.apns.mock.cli import serve_until_stopped

from ..service_account import ServiceAccountError, parse_service_account
from .faults import FcmBehaviour
from .server import MockFCM


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m owlmetry.fcm.mock", description=__doc__)
    ap.add_argument("--port", type=int, default=8443, help="0: any free port (printed)")
    ap.add_argument("--stats-port", type=int, default=None, help="GET /stats, POST /reset")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--service-account", required=True,
                    help="the service-account JSON whose key signs the token requests")
    ap.add_argument("--project", help="the project sends must name (default: the file's)")
    ap.add_argument("--accept-google-audience", action="store_true",
                    help="also accept assertions addressed to Google's token endpoint, as "
                         "google-auth (so firebase-admin) writes them")
    ap.add_argument("--token-lifetime", type=int, default=3600, help="access tokens' expires_in")
    ap.add_argument("--max-streams", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--goaway-after", type=int, default=None)
    ap.add_argument("--drop-after", type=int, default=None)
    ap.add_argument("--dead-prefix", action="append", default=[], help="UNREGISTERED tokens")
    ap.add_argument("--invalid-prefix", action="append", default=[], help="invalid tokens")
    ap.add_argument("--mismatch-prefix", action="append", default=[], help="SENDER_ID_MISMATCH")
    ap.add_argument("--retry-after", type=int, default=None, help="seconds, on 429 and 503")
    ap.add_argument("--p429", type=float, default=0.0)
    ap.add_argument("--p500", type=float, default=0.0)
    ap.add_argument("--p503", type=float, default=0.0)
    a = ap.parse_args(argv)
    try:
        with open(a.service_account) as f:
            account = parse_service_account(f.read())
    except (OSError, ServiceAccountError) as exc:
        ap.error(f"--service-account {a.service_account}: {exc}")
    behaviour = FcmBehaviour(
        max_streams=a.max_streams, latency_s=a.latency_ms / 1000, goaway_after=a.goaway_after,
        drop_after=a.drop_after, token_lifetime_s=a.token_lifetime,
        dead_prefixes=tuple(a.dead_prefix), invalid_prefixes=tuple(a.invalid_prefix),
        mismatch_prefixes=tuple(a.mismatch_prefix), retry_after_s=a.retry_after,
        error_probability={s: p for s, p in ((429, a.p429), (500, a.p500), (503, a.p503)) if p})

    mock = MockFCM(a.cert, a.key, account, behaviour, project_id=a.project,
                   accept_google_audience=a.accept_google_audience)
    serve_until_stopped(mock, a.port, a.stats_port, lambda port: {
        "mock_fcm": "listening", "port": port, "url": mock.url, "token_uri": mock.token_uri})
