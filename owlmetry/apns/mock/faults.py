"""What the mock is told to do, faults included: `MockBehaviour`, and the answers it changes.

Owns the per-token faults (410 and BadDeviceToken tokens, RST_STREAM, given statuses for a
number of requests, random 429/5xx) and the settings the server applies per connection
(stream limits, receive window, latency, GOAWAY after N streams, dropped sockets). Must not
hold counters or do I/O.
"""

import random
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
    drop_after: int | None = None  # per connection: abort the socket at its Nth request
    max_drops: int | None = None
    token_faults: dict[str, TokenFault] = field(default_factory=dict)
    reset_tokens: dict[str, int] = field(default_factory=dict)  # RST_STREAM for first K requests
    error_probability: dict[int, float] = field(default_factory=dict)  # e.g. {503: 0.1}
    unregistered: dict[str, int] = field(default_factory=dict)  # token -> 410 timestamp (ms)
    bad_tokens: set[str] = field(default_factory=set)
    topic: str | None = None  # when set, other topics are TopicDisallowed
    seed: int = 0


def apply(behaviour: MockBehaviour, token: str, verdict: Verdict,
          chance: random.Random) -> Verdict:
    """The verdict on a request Apple's rules accepted (`verdict`), once the faults for
    `token` had their say; counted faults are used up."""
    if token in behaviour.bad_tokens:
        return Verdict(400, "BadDeviceToken")
    if token in behaviour.unregistered:
        return Verdict(410, "Unregistered", {"timestamp": behaviour.unregistered[token]})
    if behaviour.reset_tokens.get(token, 0) > 0:
        behaviour.reset_tokens[token] -= 1
        return RESET
    fault = behaviour.token_faults.get(token)
    if fault is not None and fault.times != 0:
        if fault.times is not None:
            fault.times -= 1
        return Verdict(fault.status, fault.reason)
    for status, probability in behaviour.error_probability.items():
        if chance.random() < probability:
            return Verdict(status, _REASONS_FOR_STATUS.get(status, "InternalServerError"))
    return verdict
