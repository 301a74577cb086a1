"""Apple's rules for what happens after an attempt: the APNs judge of the HTTP/2 core.

Owns `RetryPolicy`, its `RetryBudget` and `AppleJudge`, which turns each answer or transport
failure of the core (`owlmetry.h2client`) into a `PushResult` or a decision to send again: 429
after an exponential, jittered delay, 5xx, reset streams and lost connections at once, a
bounded number of times (429/5xx only while the client's retry budget lasts);
ExpiredProviderToken once, after the provider token is renewed; permanent reasons never. Must
not do I/O, build requests or know about connections.
"""

from dataclasses import dataclass

from owlmetry.backoff import backoff
from owlmetry.h2client import RENEW, Exchange, Failure, Retry

from .push_result import (
    CLIENT_CLOSED,
    CONNECTION_FAILED,
    STREAM_RESET,
    TIMEOUT,
    PushResult,
    ResultKind,
    from_answer,
    is_transient,
    local_error,
    parse_error_body,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays before sending a push again after a transient failure, and how many retries
    the pool may add to its traffic.

    Two rules, so that a quick retry is still a polite one. Per push (each is one device
    token): after a 429 (Apple: too many requests to this device token; "retry with a delay")
    a jittered delay from `too_many_requests_delay_s` that doubles with each delayed retry of
    that push; after a 5xx or a lost stream `base_delay_s`, by default none: the push goes out
    again at once on another connection, since a 5xx says nothing about the token and a delay
    there only made a fan-out's unlucky pushes set its end. Per pool: a retry budget (gRPC's
    retry throttling): every 429/5xx spends a token, every other answer earns back
    `budget_ratio`, and retries stop while fewer than half of `budget` tokens are left -- so
    in-pool retries stay a small share of the requests (failures under about
    ratio / (1 + ratio) of the answers, a sixth with 0.2), and when APNs fails widely the pushes
    go back to the caller (`PushResult.retry_later`) instead of multiplying the load; the
    dispatcher's queue then waits much longer. Apple's "after 15 minutes" for 5xx is
    honoured by no surveyed client; what it asks for is not to hammer a failing service,
    which the budget guarantees and a per-push delay alone does not (new pushes keep coming).
    """

    # 7 tries in all: with 5xx retried at once, a push that drew 6 failures in a row (10% of
    # requests failing: about 1 in 50 fan-outs of 20,000) went back to the dispatcher's
    # seconds of backoff (benchmarks/RESULTS.md, "hostile APNs").
    max_retries: int = 6
    base_delay_s: float = 0.0
    max_delay_s: float = 30.0
    too_many_requests_delay_s: float = 0.2  # 100-200 ms, then 200-400, 400-800, ...
    budget: float = 1000.0
    budget_ratio: float = 0.2

    def delay(self, waited: int, status: int) -> float:
        """The delay before a retry after `status` (0: lost or reset), given how many of the
        push's retries waited one already."""
        base = self.too_many_requests_delay_s if status == 429 else self.base_delay_s
        return backoff(base, waited, self.max_delay_s) if base > 0 else 0.0


class RetryBudget:
    """The pool-wide half of `RetryPolicy`: a token bucket that 429/5xx answers drain and the
    others refill; retries are allowed while it is more than half full."""

    __slots__ = ("_ratio", "_size", "tokens")

    def __init__(self, size: float, ratio: float):
        self._size, self._ratio = size, ratio
        self.tokens = size

    def succeeded(self) -> None:
        tokens = self.tokens + self._ratio
        self.tokens = tokens if tokens < self._size else self._size

    def failed(self) -> bool:
        """A 429/5xx answer: whether it may be retried in the pool."""
        self.tokens = max(0.0, self.tokens - 1)
        return self.tokens > self._size / 2


class AppleJudge:
    """The core's `Judge` for APNs: `PushResult`s, or `Retry`s as Apple's rules allow."""

    __slots__ = ("_budget", "_retry")

    def __init__(self, retry: RetryPolicy):
        self._retry = retry
        self._budget = RetryBudget(retry.budget, retry.budget_ratio)

    def answered(self, x: Exchange) -> PushResult | Retry:
        # The request's own id, which APNs answers with (`wire.PushRequest`; the pool steps
        # over the answer's copy).
        apns_id = x.request.apns_id.decode()
        status = x.status
        if status == 200:
            self._budget.succeeded()
            return PushResult(ResultKind.DELIVERED, 200, None, apns_id, None, x.attempts)
        reason, timestamp = parse_error_body(x.body)
        if reason == "ExpiredProviderToken" and not x.renewed:
            return RENEW
        failed = from_answer(status, reason, timestamp, apns_id, x.attempts)
        if not is_transient(status, reason):
            self._budget.succeeded()  # APNs is working: a permanent answer is an answer
            return failed
        if not self._budget.failed():
            return failed  # APNs fails widely: the caller's queue waits longer than we may
        return self._later(x, status, failed)

    def failed(self, x: Exchange, failure: Failure) -> PushResult | Retry:
        if failure is Failure.LOST:
            return self._later(x, 0, local_error(CONNECTION_FAILED, x.attempts))
        if failure is Failure.RESET:
            return self._later(x, 0, local_error(STREAM_RESET, x.attempts))
        if failure is Failure.CONNECT_FAILED:
            return local_error(CONNECTION_FAILED, x.attempts)
        if failure is Failure.CLOSED:
            return local_error(CLIENT_CLOSED, x.attempts)
        return local_error(TIMEOUT, x.attempts)  # TIMEOUT, UNSENT

    def _later(self, x: Exchange, status: int, failed: PushResult) -> PushResult | Retry:
        retry = self._retry
        if x.retries >= retry.max_retries:
            return failed
        return Retry(retry.delay(x.waited, status), failed)
