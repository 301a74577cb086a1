"""What a push came to: the typed result every `send` returns, and how APNs answers map onto it.

Owns Apple's status/reason table (which reasons invalidate a token, which are permanent, which
may be retried). Must not do I/O, retry anything, or know about connections.
"""

import enum
import json
from dataclasses import dataclass

from owlmetry.frozen import quick_init


class ResultKind(enum.Enum):
    """Which kind of result a push had; its `PushResult` carries the HTTP status and reason."""

    DELIVERED = "delivered"
    UNREGISTERED = "unregistered"
    BAD_DEVICE_TOKEN = "bad_device_token"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    ERROR = "error"


# Apple: "Don't retry ... BadDeviceToken, DeviceTokenNotForTopic, Forbidden, ExpiredToken,
# Unregistered, or PayloadTooLarge"; the 400/403/404/405 request and credential errors below
# cannot succeed either until someone fixes the request or the configuration.
PERMANENT_REASONS = frozenset({
    "BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken", "PayloadTooLarge",
    "Forbidden", "BadCollapseId", "BadExpirationDate", "BadMessageId", "BadPriority", "BadTopic",
    "DuplicateHeaders", "InvalidPushType", "MissingDeviceToken", "MissingTopic", "PayloadEmpty",
    "TopicDisallowed", "BadCertificate", "BadCertificateEnvironment", "InvalidProviderToken",
    "MissingProviderToken", "UnrelatedKeyIdInToken", "BadEnvironmentKeyIdInToken", "BadPath",
    "MethodNotAllowed", "BadPayload",
})
# Reasons produced by this client, not by APNs (status 0: no HTTP answer was received).
TIMEOUT = "Timeout"
CONNECTION_FAILED = "ConnectionFailed"
STREAM_RESET = "StreamReset"
CLIENT_CLOSED = "ClientClosed"


@quick_init
@dataclass(frozen=True, slots=True)
class PushResult:
    """One push's result. `status` is the HTTP status (0 when APNs never answered).

    `timestamp_ms` is APNs' 410 timestamp (ms since the epoch): delete the token only if it was
    not registered again after that moment. `attempts` counts the requests put on the wire.
    """

    kind: ResultKind
    status: int = 0
    reason: str | None = None
    apns_id: str | None = None
    timestamp_ms: int | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.kind is ResultKind.DELIVERED

    @property
    def token_invalid(self) -> bool:
        """The device token should be deleted (410 subject to `timestamp_ms`)."""
        return self.kind in (ResultKind.UNREGISTERED, ResultKind.BAD_DEVICE_TOKEN)

    @property
    def retry_later(self) -> bool:
        """A transient failure the pool gave up on: the same push may succeed later."""
        return self.kind is ResultKind.ERROR and (self.status in (0, 429) or self.status >= 500)

    @property
    def permanent(self) -> bool:
        """The push will never succeed as it is (neither delivered nor worth retrying)."""
        return not self.ok and not self.retry_later


def delivered(apns_id: str | None, attempts: int) -> PushResult:
    return PushResult(ResultKind.DELIVERED, 200, None, apns_id, None, attempts)


def local_error(reason: str, attempts: int) -> PushResult:
    return PushResult(ResultKind.ERROR, 0, reason, None, None, attempts)


def payload_too_large(attempts: int = 0) -> PushResult:
    return PushResult(ResultKind.PAYLOAD_TOO_LARGE, 413, "PayloadTooLarge", None, None, attempts)


def parse_error_body(body: bytes) -> tuple[str | None, int | None]:
    """(reason, timestamp) from an APNs error body; tolerant of junk, which APNs never sends."""
    try:
        doc = json.loads(body)
        reason, timestamp = doc.get("reason"), doc.get("timestamp")
    except (ValueError, AttributeError, RecursionError):
        return None, None
    return (reason if isinstance(reason, str) else None,
            timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None)


def from_answer(status: int, reason: str | None, timestamp: int | None, apns_id: str | None,
                attempts: int) -> PushResult:
    """Map a final (non-200) APNs answer onto a result."""
    if status == 410 or reason in ("Unregistered", "ExpiredToken"):
        kind = ResultKind.UNREGISTERED
    elif reason in ("BadDeviceToken", "DeviceTokenNotForTopic"):
        kind = ResultKind.BAD_DEVICE_TOKEN
    elif status == 413 or reason == "PayloadTooLarge":
        kind = ResultKind.PAYLOAD_TOO_LARGE
    else:
        kind = ResultKind.ERROR
    return PushResult(kind, status, reason, apns_id, timestamp, attempts)


def is_transient(status: int, reason: str | None) -> bool:
    """Worth sending again after a delay: 429 TooManyRequests and 5xx, nothing permanent."""
    if reason in PERMANENT_REASONS:
        return False
    return status == 429 or status >= 500
