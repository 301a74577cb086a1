"""What the mock is told to do, faults included: `MockBehaviour`, and the answers it changes.

Owns the per-token faults (410 and BadDeviceToken tokens, a share of tokens dead, RST_STREAM,
given statuses for a number of requests, 429/5xx at a share of requests) and the settings the
server applies per connection (stream limits and their schedule, receive window, latency,
GOAWAY after N streams, connections reset). Must not hold counters or do I/O.

The shares are drawn from a hash of (seed, token, the token's request number), not from a
random sequence: the same seed gives the same answers whatever order the streams arrive in.
"""

import functools
import hashlib
import time
from dataclasses import dataclass, field

from .rules import RESET, Verdict

_REASONS_FOR_STATUS = {429: "TooManyRequests", 500: "InternalServerError",
                       503: "ServiceUnavailable"}


@dataclass
class TokenFault:
    """Answer `status`/`reason` to a device token for its first `times` requests (None: all)."""

    status: int
    reason: str
    times: int | None = None


@dataclass
class MockBehaviour:
    """What the mock does; tests may change it between (not during) phases."""

    max_streams: int = 1000
    initial_max_streams: int | None = None  # until a connection's first authenticated request
    initial_window_size: int = 65535  # per-stream receive window advertised to clients
    latency_s: float = 0.0
    goaway_after: int | None = None  # per connection: GOAWAY after its Nth stream
    drop_after: int | None = None  # per connection: abort the socket at its Nth request...
    drop_rst: bool = False  # ...with a TCP RST
    max_drops: int | None = None
    # (after this many requests in all, SETTINGS_MAX_CONCURRENT_STREAMS becomes this), in order
    max_streams_schedule: list[tuple[int, int]] = field(default_factory=list)
    token_faults: dict[str, TokenFault] = field(default_factory=dict)
    reset_tokens: dict[str, int] = field(default_factory=dict)  # RST_STREAM for first K requests
    # token -> after this many of its requests were judged, hold the next ones unjudged and
    # unanswered until `MockAPNs.release(token)` (an answer that comes when the test says)
    hold_tokens: dict[str, int] = field(default_factory=dict)
    error_probability: dict[int, float] = field(default_factory=dict)  # share, e.g. {503: 0.1}
    unregistered: dict[str, int] = field(default_factory=dict)  # token -> 410 timestamp (ms)
    dead_share: float = 0.0  # this share of all tokens (by hash) answers 410 Unregistered...
    dead_since_ms: int | None = None  # ...with this timestamp (None: the moment it answers)
    bad_tokens: set[str] = field(default_factory=set)
    topic: str | None = None  # when set, other topics are TopicDisallowed
    seed: int = 0

    def is_dead(self, token: str) -> bool:
        """Whether `token` is one of the `dead_share` (so a test knows which to expect)."""
        return self.dead_share > 0 and share(self.seed, token, -1) < self.dead_share


def share(seed: int, token: str, n: int) -> float:
    """A number in [0, 1) fixed by (seed, token, n), evenly spread: the hash of
    f"{seed}/{token}/{n}", the seed's part hashed once."""
    digest = _seeded(seed).copy()
    digest.update(f"{token}/{n}".encode())
    return int.from_bytes(digest.digest()) / 2**64


@functools.lru_cache(maxsize=16)
def _seeded(seed: int):
    return hashlib.blake2b(f"{seed}/".encode(), digest_size=8)


def apply(behaviour: MockBehaviour, token: str, verdict: Verdict, n: int = 0) -> Verdict:
    """The verdict on request number `n` to `token` that Apple's rules accepted (`verdict`),
    once the faults for `token` had their say; counted faults are used up."""
    # A token's own counted faults first: they may come before its death.
    if behaviour.reset_tokens.get(token, 0) > 0:
        behaviour.reset_tokens[token] -= 1
        return RESET
    fault = behaviour.token_faults.get(token)
    if fault is not None and fault.times != 0:
        if fault.times is not None:
            fault.times -= 1
        return Verdict(fault.status, fault.reason)
    if token in behaviour.bad_tokens:
        return Verdict(400, "BadDeviceToken")
    if token in behaviour.unregistered:
        return Verdict(410, "Unregistered", {"timestamp": behaviour.unregistered[token]})
    if behaviour.is_dead(token):
        since = behaviour.dead_since_ms
        return Verdict(410, "Unregistered",
                       {"timestamp": int(time.time() * 1000) if since is None else since})
    if behaviour.error_probability:
        # One draw per request, the statuses' shares stacked: 429 at 5% and 503 at 5% make
        # 10% of requests fail, each with its own status.
        draw, below = share(behaviour.seed, token, n), 0.0
        for status, probability in behaviour.error_probability.items():
            below += probability
            if draw < below:
                return Verdict(status, _REASONS_FOR_STATUS.get(status, "InternalServerError"))
    return verdict
