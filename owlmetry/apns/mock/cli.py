"""`python -m owlmetry.apns.mock`: the project's testing server, a stand-in for APNs (HTTP/2
over TLS, Apple's rules and reasons, faults on demand), in a process of its own. It prints one
JSON line, {"mock_apns": "listening", "port", "stats_port"}, once it listens, serves its
counters on the stats port (plain HTTP/1.1: GET /stats, POST /reset, like the benchmark
harness's Node mock), and exits on SIGTERM or Ctrl-C.
"""

import argparse
import asyncio
import json
import signal

from .faults import MockBehaviour
from .server import MockAPNs
from .stats import serve_stats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m owlmetry.apns.mock", description=__doc__)
    ap.add_argument("--port", type=int, default=8443, help="0: any free port (printed)")
    ap.add_argument("--stats-port", type=int, default=None, help="GET /stats, POST /reset")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--auth-key", help="ES256 key (.p8 or public PEM) provider tokens must verify with")
    ap.add_argument("--key-id")
    ap.add_argument("--team-id")
    ap.add_argument("--max-streams", type=int, default=1000)
    ap.add_argument("--initial-max-streams", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--goaway-after", type=int, default=None,
                    help="GOAWAY on each connection after its Nth stream")
    ap.add_argument("--drop-after", type=int, default=None,
                    help="close each connection abruptly at its Nth request")
    ap.add_argument("--drop-rst", action="store_true", help="...with a TCP RST")
    ap.add_argument("--max-drops", type=int, default=None, help="reset at most this many")
    ap.add_argument("--p429", type=float, default=0.0, help="share of requests answered 429")
    ap.add_argument("--p500", type=float, default=0.0)
    ap.add_argument("--p503", type=float, default=0.0)
    ap.add_argument("--dead-tokens", type=float, default=0.0,
                    help="share of device tokens answered 410 Unregistered (timestamp: now)")
    ap.add_argument("--streams-schedule", type=_schedule, default=[], metavar="N:S,...",
                    help="after N requests in all, SETTINGS_MAX_CONCURRENT_STREAMS becomes S "
                         "on every connection (e.g. 5000:1,6000:1000)")
    ap.add_argument("--seed", type=int, default=0, help="which requests and tokens the shares hit")
    a = ap.parse_args(argv)
    behaviour = MockBehaviour(
        max_streams=a.max_streams, initial_max_streams=a.initial_max_streams,
        latency_s=a.latency_ms / 1000, goaway_after=a.goaway_after, drop_after=a.drop_after,
        max_drops=a.max_drops, drop_rst=a.drop_rst, max_streams_schedule=a.streams_schedule,
        dead_share=a.dead_tokens, seed=a.seed,
        error_probability={s: p for s, p in ((429, a.p429), (500, a.p500), (503, a.p503)) if p})
    auth_key = None
    if a.auth_key:
        with open(a.auth_key) as f:
            auth_key = f.read()

    mock = MockAPNs(a.cert, a.key, auth_key, a.key_id, a.team_id, behaviour)
    serve_until_stopped(mock, a.port, a.stats_port, lambda port: {"mock_apns": "listening",
                                                                  "port": port})


def _schedule(text: str) -> list[tuple[int, int]]:
    try:
        steps = [tuple(int(n) for n in step.split(":")) for step in text.split(",") if step]
    except ValueError:
        steps = [()]
    if any(len(step) != 2 or step[0] < 0 or step[1] < 1 for step in steps):
        raise argparse.ArgumentTypeError(f"expected N:S[,N:S...] with S >= 1, got {text!r}")
    return sorted(steps)


def serve_until_stopped(mock, port: int, stats_port: int | None, announce) -> None:
    """Run a started-on-demand mock (APNs' or FCM's) until SIGTERM or ^C: its stats endpoint
    beside it when asked, and one JSON line on stdout (`announce(port)` and the stats port)
    once it listens, which is what the harnesses wait for."""

    async def serve():
        listening = await mock.start(port=port)
        stats = None if stats_port is None else await serve_stats(
            lambda: mock.stats.summary(), mock.reset_stats, stats_port)
        print(json.dumps({**announce(listening),
                          "stats_port": stats.sockets[0].getsockname()[1] if stats else None}),
              flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            if stats is not None:
                stats.close()
            await mock.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
