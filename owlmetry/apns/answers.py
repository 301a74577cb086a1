"""Apple's rules for what happens after an attempt: the APNs judge of the HTTP/2 core.

Owns `RetryPolicy` and `AppleJudge`, which turns each answer or transport failure of the core
(`owlmetry.h2client`) into a `PushResult` or a decision to send again: 429, 5xx, reset streams
and lost connections after an exponential, jittered delay, a bounded number of times;
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
    delivered,
    from_answer,
    is_transient,
    local_error,
    parse_error_body,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays before sending a push again after a transient failure.

    Apple suggests waiting long before retrying 5xx; inside one `send` the pool only rides out
    short storms, and `PushResult.retry_later` tells the caller to try again much later.
    """

    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # 429 is about one device token ("too many requests ... consecutively to the same device
    # token"), and a fan-out sends each token one push: a second's pause is a pause from us.
    # 5 s made a fan-out's last 429s, not its work, set its end (benchmarks/hostile_apns.py).
    too_many_requests_delay_s: float = 1.0

    def delay(self, retry: int, status: int) -> float:
        base = self.too_many_requests_delay_s if status == 429 else self.base_delay_s
        return backoff(base, retry, self.max_delay_s)


class AppleJudge:
    """The core's `Judge` for APNs: `PushResult`s, or `Retry`s as Apple's rules allow."""

    __slots__ = ("_retry",)

    def __init__(self, retry: RetryPolicy):
        self._retry = retry

    def answered(self, x: Exchange) -> PushResult | Retry:
        apns_id = None
        for name, value in x.headers:
            if name == b"apns-id":
                apns_id = value.decode()
                break
        status = x.status
        if status == 200:
            return delivered(apns_id, x.attempts)
        reason, timestamp = parse_error_body(x.body)
        if reason == "ExpiredProviderToken" and not x.renewed:
            return RENEW
        failed = from_answer(status, reason, timestamp, apns_id, x.attempts)
        if not is_transient(status, reason):
            return failed
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
        return Retry(retry.delay(x.retries, status), failed)
