"""What the mock FCM is told to do, faults included: `FcmBehaviour`, and the answers it changes.

The connection-level settings and faults (stream limits, latency, GOAWAY after N streams,
dropped sockets, RST_STREAM per token, given answers per token, random 429/5xx) are the APNs
mock's `MockBehaviour`, inherited; this adds FCM's: dead, invalid and other-project tokens by
prefix, quota 429s with Retry-After, 503s and 500s for the next N sends, THIRD_PARTY_AUTH_ERROR,
and the access tokens' lifetime. Must not hold counters or do I/O.
"""

import random
from dataclasses import dataclass

from owlmetry.apns.mock.faults import MockBehaviour

from .rules import Answer, fcm_error

# FCM's own words for the answers the faults produce.
UNREGISTERED = (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
SENDER_ID_MISMATCH = (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch")
QUOTA_EXCEEDED = (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED",
                  "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per "
                  "minute per project'.")
UNAVAILABLE = (503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")
INTERNAL = (500, "INTERNAL", "INTERNAL", "Internal error encountered.")
THIRD_PARTY_AUTH = (401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR",
                    "Auth error from APNS or Web Push Service")
BY_STATUS = {429: QUOTA_EXCEEDED, 500: INTERNAL, 503: UNAVAILABLE, 404: UNREGISTERED,
             403: SENDER_ID_MISMATCH, 401: THIRD_PARTY_AUTH}


@dataclass
class FcmBehaviour(MockBehaviour):
    """What the mock FCM does; tests may change it between (not during) phases.

    `token_faults` (inherited) maps a token to a `TokenFault(status, ...)`: the status picks
    FCM's answer from BY_STATUS (429, 500, 503, 404, 403, 401).
    """

    dead_prefixes: tuple[str, ...] = ()  # UNREGISTERED
    invalid_prefixes: tuple[str, ...] = ()  # INVALID_ARGUMENT on message.token
    mismatch_prefixes: tuple[str, ...] = ()  # SENDER_ID_MISMATCH
    quota_next: int = 0  # the next N sends: 429 QUOTA_EXCEEDED
    retry_after_s: int | None = None  # sent with those 429s (and 503s) when set
    unavailable_next: int = 0  # the next N sends: 503 UNAVAILABLE
    internal_next: int = 0  # the next N sends: 500 INTERNAL
    third_party_auth_next: int = 0  # the next N sends: 401 THIRD_PARTY_AUTH_ERROR
    token_lifetime_s: int = 3600  # access tokens' expires_in; older tokens get 401


def answer_for(kind: tuple, retry_after_s: int | None = None) -> Answer:
    status, rpc_status, code, message = kind
    headers = ()
    if retry_after_s is not None and status in (429, 503):
        headers = ((b"retry-after", str(retry_after_s).encode()),)
    return fcm_error(status, rpc_status, message, code, headers=headers)


def apply(behaviour: FcmBehaviour, token: str, accepted: Answer, chance: random.Random) -> Answer:
    """The answer to a send FCM's rules accepted (`accepted`), once the faults for `token` had
    their say; counted faults are used up."""
    b = behaviour
    if token.startswith(b.dead_prefixes):
        return answer_for(UNREGISTERED)
    if token.startswith(b.mismatch_prefixes):
        return answer_for(SENDER_ID_MISMATCH)
    if b.reset_tokens.get(token, 0) > 0:
        b.reset_tokens[token] -= 1
        return Answer(0, reset=True)
    fault = b.token_faults.get(token)
    if fault is not None and fault.times != 0:
        if fault.times is not None:
            fault.times -= 1
        return answer_for(BY_STATUS.get(fault.status, INTERNAL), b.retry_after_s)
    for name, kind in (("quota_next", QUOTA_EXCEEDED), ("unavailable_next", UNAVAILABLE),
                       ("internal_next", INTERNAL), ("third_party_auth_next", THIRD_PARTY_AUTH)):
        if getattr(b, name) > 0:
            setattr(b, name, getattr(b, name) - 1)
            return answer_for(kind, b.retry_after_s)
    for status, probability in b.error_probability.items():
        if chance.random() < probability:
            return answer_for(BY_STATUS.get(status, INTERNAL), b.retry_after_s)
    return accepted
