"""What the mock counts (`MockStats`), what it recorded of each request when asked to
(`ReceivedRequest`), and the plain HTTP/1.1 endpoint that serves the counts to another process:
GET /stats, POST /reset, like the benchmark harness's Node mock.

Must not decide answers.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

TIMELINE_STEPS = 10  # per second


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One stream's complete request as the mock received it: its device token, its headers
    (`:path` and every regular header, decoded, without `authorization`), its body parsed as
    JSON (None if it is not JSON), the status the mock answered (0 for a reset) and the
    `connection` it came on (1 for the mock's first, 2 for the next, ...)."""

    token: str
    headers: dict
    payload: dict | list | None
    status: int
    connection: int = 0

    @classmethod
    def of(cls, token: str, headers: dict, body: bytes, status: int,
           connection: int = 0) -> "ReceivedRequest":
        kept = {name.decode(): value.decode(errors="replace") for name, value in headers.items()
                if name == b":path" or not name.startswith(b":") and name != b"authorization"}
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        return cls(token, kept, payload, status, connection)


@dataclass
class MockStats:
    requests: Counter = field(default_factory=Counter)  # device token -> requests processed
    topics: Counter = field(default_factory=Counter)  # apns-topic -> requests
    delivered: Counter = field(default_factory=Counter)  # device token -> 200s (or accepted)
    payloads: dict = field(default_factory=dict)  # device token -> its last accepted payload
    responses_by_status: Counter = field(default_factory=Counter)
    connections_opened: int = 0
    connections_open: int = 0
    max_streams_open: int = 0  # most streams open at once on one connection
    goaways_sent: int = 0
    refused_streams: int = 0
    resets_sent: int = 0
    drops: int = 0  # connections reset
    max_streams_changes: int = 0  # SETTINGS_MAX_CONCURRENT_STREAMS changed at runtime
    lost_answers: list = field(default_factory=list)  # tokens accepted, answer lost in a drop
    # With `drop_rst`: the token of every request judged on a connection later reset (its
    # answer may have been discarded with the socket's buffers), once per request
    reset_judged: list = field(default_factory=list)
    provider_tokens: set = field(default_factory=set)  # distinct bearer tokens that verified
    pings: int = 0
    protocol_errors: int = 0
    protocol_error_reasons: Counter = field(default_factory=Counter)  # what h2 said, how often
    # Answers per tenth of a second (monotonic clock) by status, and "again" for answers to a
    # token's second or later request: where a run's time went, seen from APNs' side
    timeline: dict = field(default_factory=dict)
    # (monotonic s, what): connections opened, GOAWAYs, resets, stream limits sent and
    # acknowledged -- the gaps in the timeline beside their causes
    events: list = field(default_factory=list)
    # (monotonic s, the token's number in this trail, its request number, status, connection)
    # of every answer but a first 200: each unlucky push's tries, and when each came
    trail: list = field(default_factory=list)
    trail_tokens: dict = field(default_factory=dict)

    def answered(self, status: int, again: bool) -> None:
        now = time.monotonic()
        step = int(now * TIMELINE_STEPS)
        counts = self.timeline.get(step)
        if counts is None:
            counts = self.timeline[step] = Counter()
        counts[status] += 1
        if again:
            counts["again"] += 1

    def tried(self, token: str, n: int, status: int, connection: int) -> None:
        number = self.trail_tokens.setdefault(token, len(self.trail_tokens))
        self.trail.append((time.monotonic(), number, n, status, connection))

    def event(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def summary(self) -> dict:
        out = asdict(replace(self, payloads={}, trail_tokens={}))
        del out["payloads"], out["trail_tokens"]
        out["requests"] = sum(self.requests.values())
        out["delivered"] = sum(self.delivered.values())
        out["unique_delivered"] = len(self.delivered)
        out["duplicate_delivered"] = out["delivered"] - out["unique_delivered"]
        out["responses_by_status"] = dict(self.responses_by_status)
        out["protocol_error_reasons"] = dict(self.protocol_error_reasons)
        out["topics"] = dict(self.topics)
        out["provider_tokens"] = len(self.provider_tokens)
        out["lost_answers"] = len(self.lost_answers)
        out["reset_judged"] = len(self.reset_judged)
        first = min(self.timeline, default=0)
        out["timeline"] = [[(step - first) / TIMELINE_STEPS, dict(counts)]
                           for step, counts in sorted(self.timeline.items())]
        origin = first / TIMELINE_STEPS
        out["events"] = [[round(t - origin, 3), what] for t, what in self.events]
        out["trail"] = [[round(t - origin, 3), *rest] for t, *rest in self.trail]
        return out


async def serve_stats(summary: Callable[[], dict], reset: Callable[[], None],
                      port: int) -> asyncio.Server:
    """GET /stats answers `summary()` as JSON; POST /reset calls `reset()`. On 127.0.0.1."""

    async def handle(reader, writer):
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            method, path = (line.decode().split() + ["", ""])[:2]
            if method == "GET" and path == "/stats":
                code, body = 200, json.dumps(summary())
            elif method == "POST" and path == "/reset":
                reset()
                code, body = 200, '{"reset":true}'
            else:
                code, body = 404, "{}"
            writer.write(f"HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: "
                         f"{len(body)}\r\nconnection: close\r\n\r\n{body}".encode())
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)
