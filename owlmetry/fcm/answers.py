"""What an FCM `messages:send` answer means: a `Decision` for every status and error body.

Owns FCM's error table. The error body is google.rpc's `{"error": {"code", "message",
"status", "details": [...]}}`; its details may hold an `FcmError` (`errorCode`, FCM's own code,
preferred over the generic `status`) and a `BadRequest` (`fieldViolations`, whose `field`
`message.token` says the registration token itself is at fault). Must not do I/O, retry or
sleep: the sender acts on the decision (and waits `retry_delay`).

- 200: DELIVERED (`name` = projects/<p>/messages/<id>).
- UNREGISTERED (404) and SENDER_ID_MISMATCH (403): REMOVE. FCM gives no timestamp, so the
  caller guards the removal with the moment its send began (a device registered again after
  that keeps its row).
- INVALID_ARGUMENT (400): REMOVE only when FCM blames the token (a `message.token` field
  violation, or its "not a valid FCM registration token" message); otherwise FAIL with FCM's
  message (the same code covers a bad payload, TTL or size, which no retry fixes).
- QUOTA_EXCEEDED (429): RETRY_AFTER, Retry-After's seconds or else the next minute (the quota
  is per minute).
- UNAVAILABLE (503), INTERNAL (500), any other 5xx or unreadable answer: BACKOFF, with
  Retry-After when FCM sent one, else `owlmetry.backoff`.
- 401 without an FCM code: REFRESH (the access token expired or was revoked: invalidate it,
  send again once); a second 401 with a fresh token is BACKOFF, naming the configuration.
- THIRD_PARTY_AUTH_ERROR, 403 PERMISSION_DENIED, 404 without UNREGISTERED (a wrong project
  or URL): FAIL with a reason naming what to fix. Other 4xx: FAIL with FCM's message.

Only FCM's explicit codes remove a device: a 404 from a mistyped FCM_URL must not empty the
registry. Which tokens exist is FCM's to say: the registry's Android rule
(`owlmetry.device_tokens`) keeps out only what no FCM token has ever looked like, and a token
it let in that FCM calls invalid is removed here (the mock calls tokens outside that rule
invalid, as FCM would).
"""

import email.utils
import enum
import time
from dataclasses import dataclass

import orjson

from owlmetry.backoff import backoff

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
TOKEN_FIELD = "message.token"
INVALID_TOKEN_TEXT = "not a valid FCM registration token"
MAX_REASON = 300  # characters of FCM's message kept in a reason

# The sender's waits for BACKOFF when FCM gave no Retry-After (Google: exponential back-off,
# starting around a second).
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class Decision(enum.Enum):
    DELIVERED = "delivered"
    REMOVE = "remove"  # the token is dead for this project: delete the device
    RETRY_AFTER = "retry_after"  # quota: wait `retry_after_s`, then send again
    BACKOFF = "backoff"  # transient: send again after `retry_delay`
    REFRESH = "refresh"  # the access token was refused: invalidate it, send again once
    FAIL = "fail"  # permanent for this message: `reason` says why


@dataclass(frozen=True, slots=True)
class FcmAnswer:
    """One answer's decision. `code`: FCM's errorCode, else google.rpc's status, else None.
    `reason`: FCM's message, or what to fix. `message_name`: the 200's `name`."""

    decision: Decision
    status: int
    code: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None
    message_name: str | None = None

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before sending again (RETRY_AFTER, BACKOFF); `attempt` 0 = first."""
        if self.retry_after_s is not None:
            return self.retry_after_s
        return backoff(BACKOFF_BASE_S, attempt, BACKOFF_CAP_S)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    status: str | None = None  # google.rpc code name: INVALID_ARGUMENT, UNAVAILABLE, ...
    message: str | None = None
    fcm_code: str | None = None  # FcmError's errorCode
    fields: tuple[str, ...] = ()  # BadRequest field violations' `field`s


def parse_error(body: bytes) -> ErrorBody:
    """The parts of a google.rpc error body that matter; tolerant of HTML and junk."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ErrorBody()
    if not isinstance(error, dict):
        return ErrorBody()
    fcm_code, fields = None, []
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            fcm_code = detail["errorCode"]
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                    fields.append(violation["field"])
    status, message = error.get("status"), error.get("message")
    return ErrorBody(status if isinstance(status, str) else None,
                     message[:MAX_REASON] if isinstance(message, str) else None,
                     fcm_code, tuple(fields))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now` (wall clock): delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - now)


def delivered(body: bytes) -> FcmAnswer:
    """A 200's answer, its `name` kept when FCM sent one."""
    try:
        name = orjson.loads(body).get("name")
    except (orjson.JSONDecodeError, AttributeError):
        name = None
    return FcmAnswer(Decision.DELIVERED, 200, None, None, None,
                     name if name.__class__ is str else None)


def classify(status: int, body: bytes, retry_after: str | None = None, *,
             refreshed: bool = False, now: float | None = None) -> FcmAnswer:
    """The decision on one answer. `refreshed`: this send already went out again with a fresh
    access token after a 401. `now`: the wall clock (for Retry-After dates, the next minute)."""
    if status == 200:
        return delivered(body)
    now = time.time() if now is None else now
    error = parse_error(body)
    code = error.fcm_code or error.status
    message = error.message or f"HTTP {status}"
    wait = retry_after_seconds(retry_after, now)

    if code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
        return FcmAnswer(Decision.REMOVE, status, code, message)
    if code == "QUOTA_EXCEEDED" or status == 429:
        if wait is None:
            wait = 60.0 - now % 60.0  # FCM's quota refills each minute
        return FcmAnswer(Decision.RETRY_AFTER, status, code or "QUOTA_EXCEEDED", message, wait)
    if code == "THIRD_PARTY_AUTH_ERROR":
        return FcmAnswer(Decision.FAIL, status, code, (
            "FCM refused the APNs certificate or web-push key uploaded to the Firebase project "
            f"(THIRD_PARTY_AUTH_ERROR): fix them in the Firebase console; FCM said: {message}"))
    if code == "INVALID_ARGUMENT" or status == 400:
        if TOKEN_FIELD in error.fields or INVALID_TOKEN_TEXT in message:
            return FcmAnswer(Decision.REMOVE, status, code or "INVALID_ARGUMENT", message)
        return FcmAnswer(Decision.FAIL, status, code or "INVALID_ARGUMENT", message)
    if status == 401:
        if not refreshed:
            return FcmAnswer(Decision.REFRESH, status, code or "UNAUTHENTICATED", message)
        return FcmAnswer(Decision.BACKOFF, status, code or "UNAUTHENTICATED", (
            "FCM refused a freshly issued access token (401): check that FCM_SERVICE_ACCOUNT "
            f"belongs to the Firebase project; FCM said: {message}"), wait)
    if status == 403 or code == "PERMISSION_DENIED":
        return FcmAnswer(Decision.FAIL, status, code or "PERMISSION_DENIED", (
            "FCM denied the service account permission to send (403 PERMISSION_DENIED): check "
            "that FCM_SERVICE_ACCOUNT's project_id is the app's Firebase project, that the "
            "Firebase Cloud Messaging API is enabled, and that the account may send "
            f"(cloudmessaging.messages.create); FCM said: {message}"))
    if status == 404:
        return FcmAnswer(Decision.FAIL, status, code or "NOT_FOUND", (
            "FCM answered 404 without UNREGISTERED: check FCM_URL and the service account's "
            f"project_id; FCM said: {message}"))
    if status >= 500 or status == 0 or code in ("UNAVAILABLE", "INTERNAL"):
        return FcmAnswer(Decision.BACKOFF, status, code, message, wait)
    return FcmAnswer(Decision.FAIL, status, code, message)
