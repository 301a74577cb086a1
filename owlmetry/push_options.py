"""A notification's push options: how its pushes go out, beyond what they say (issue 14's rich
content). One rule, wherever the options enter (the producer's POST) or are kept (the store's
`notification_contents.push_options`).

Owns the producer's fields (`push_type`, `priority`, `expires_at` / `ttl_seconds`, `collapse_id`,
`thread_id`, `category`, `mutable_content`, `interruption_level`, `relevance_score`, `sound`,
`badge`), what each accepts, Apple's rules between them (a background push has priority 5 and
no alert, sound or badge), and their stored form. Every field is optional; a request with none
gets `DEFAULT`, today's push (an alert, priority 10, sound "default", the unread badge). Must not
know how a provider writes them (`owlmetry.notify.providers`, `owlmetry.fcm.message`), nor do I/O.
"""

import datetime
import math
import re
from dataclasses import asdict, dataclass, fields

import orjson

PUSH_TYPES = ("alert", "background")
# Apple: 10 immediate, 5 power-considerate, 1 power above all; a background push is always 5.
PRIORITIES = (10, 5, 1)
BACKGROUND_PRIORITY = 5
INTERRUPTION_LEVELS = ("passive", "active", "time-sensitive", "critical")
BADGES = ("unread", "none")
MAX_COLLAPSE_ID_BYTES = 64  # Apple's limit (BadCollapseId past it)
MAX_TEXT = 256  # thread_id, category, sound: names, not prose
# FCM keeps a message 28 days at most; Apple gives no figure. One limit for both channels.
MAX_TTL_S = 28 * 24 * 3600
# The ISO 8601 times taken (RFC 3339's, seconds optional): a date, a time, an offset or Z.
INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2})")
# Fields a background push cannot carry: it has no alert, sound or badge (Apple).
ALERT_ONLY = ("thread_id", "category", "mutable_content", "interruption_level",
              "relevance_score", "sound", "badge")
# The request's fields this module reads (the rest of the body is the producer route's).
REQUEST_FIELDS = ("push_type", "priority", "expires_at", "ttl_seconds", "collapse_id",
                  *ALERT_ONLY)


@dataclass(frozen=True, slots=True)
class PushOptions:
    """How a notification's pushes go out, resolved: `priority` is set (10 for an alert, 5 for
    a background push unless given); `expiration` is Apple's `apns-expiration`: None (the
    provider's default storage), 0 (try once, never stored) or a UNIX time in seconds;
    `sound` None is silent; `badge` "none" sends no badge."""

    push_type: str = "alert"
    priority: int = 10
    expiration: int | None = None
    collapse_id: str | None = None
    thread_id: str | None = None
    category: str | None = None
    mutable_content: bool = False
    interruption_level: str | None = None
    relevance_score: float | None = None
    sound: str | None = "default"
    badge: str = "unread"

    @property
    def background(self) -> bool:
        return self.push_type == "background"

    def expired(self, now_s: int) -> bool:
        """True once a notification with an expiry date is past it (a try-once one never is)."""
        return bool(self.expiration) and self.expiration <= now_s

    def ttl_s(self, now_s: int, default: int) -> int:
        """Seconds left to deliver in, from `now_s`: `default` without an expiry."""
        if self.expiration is None:
            return default
        return max(0, self.expiration - now_s) if self.expiration else 0


DEFAULT = PushOptions()


def parse(body: dict, now_s: int) -> PushOptions:
    """The options a producer's request body asks for; ValueError naming the field otherwise.
    A field that is absent or null takes its default, except `sound`, where null is silence."""
    push_type = _one_of(body, "push_type", PUSH_TYPES) or "alert"
    priority = body.get("priority")
    if priority is not None and (type(priority) is not int or priority not in PRIORITIES):
        raise ValueError("priority must be 10, 5 or 1")
    if push_type == "background":
        if priority not in (None, BACKGROUND_PRIORITY):
            raise ValueError("priority must be 5 for push_type background (Apple refuses a "
                             f"background push with priority {priority})")
        given = [name for name in ALERT_ONLY if _alert_field_given(body, name)]
        if given:
            raise ValueError(f"{given[0]} cannot be used with push_type background (a "
                             "background push has no alert, sound or badge)")
    options = {
        "push_type": push_type,
        "priority": priority or (BACKGROUND_PRIORITY if push_type == "background" else 10),
        "expiration": _expiration(body, now_s),
        "collapse_id": _collapse_id(body.get("collapse_id")),
        "thread_id": _name(body, "thread_id"),
        "category": _name(body, "category"),
        "mutable_content": _flag(body, "mutable_content"),
        "interruption_level": _one_of(body, "interruption_level", INTERRUPTION_LEVELS),
        "relevance_score": _score(body.get("relevance_score")),
        "sound": _sound(body),
        "badge": _one_of(body, "badge", BADGES) or "unread",
    }
    if push_type == "background":
        options.update(sound=None, badge="none")
    return PushOptions(**options)


def stored(options: PushOptions) -> str | None:
    """The options as `notification_contents.push_options` keeps them: JSON of the fields that
    differ from `DEFAULT`, or None when none does (every notification from before)."""
    changed = {name: value for name, value in asdict(options).items()
               if value != getattr(DEFAULT, name)}
    return orjson.dumps(changed).decode() if changed else None


def from_stored(text: str | None) -> PushOptions:
    if not text:
        return DEFAULT
    known = {field.name for field in fields(PushOptions)}
    return PushOptions(**{name: value for name, value in orjson.loads(text).items()
                          if name in known})


def _alert_field_given(body: dict, name: str) -> bool:
    value = body.get(name)
    if name == "badge":
        return value == "unread"
    if name == "mutable_content":
        return value is True
    return value is not None


def _one_of(body: dict, name: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return bool(value)


def _name(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()
                              or len(value) > MAX_TEXT):
        raise ValueError(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def _sound(body: dict) -> str | None:
    if "sound" not in body:
        return "default"
    if body["sound"] is None:
        return None
    try:
        return _name(body, "sound")
    except ValueError:
        raise ValueError(f"sound must be a sound's name (a non-empty string of at most "
                         f"{MAX_TEXT} characters), or null for a silent push") from None


def _collapse_id(value) -> str | None:
    if value is not None and (not isinstance(value, str) or not value
                              or len(value.encode()) > MAX_COLLAPSE_ID_BYTES):
        raise ValueError(f"collapse_id must be a non-empty string of at most "
                         f"{MAX_COLLAPSE_ID_BYTES} bytes (UTF-8)")
    return value


def _score(value) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0 <= value <= 1):
        raise ValueError("relevance_score must be a number from 0 to 1")
    return value


def _expiration(body: dict, now_s: int) -> int | None:
    expires_at, ttl = body.get("expires_at"), body.get("ttl_seconds")
    if expires_at is not None and ttl is not None:
        raise ValueError("expires_at and ttl_seconds cannot both be given (choose one)")
    if ttl is not None:
        if type(ttl) is not int or not 0 <= ttl <= MAX_TTL_S:
            raise ValueError(f"ttl_seconds must be a whole number of seconds from 0 (try once) "
                             f"to {MAX_TTL_S} (28 days)")
        return now_s + ttl if ttl else 0
    if expires_at is None:
        return None
    when = _instant(expires_at)
    if when <= now_s:
        raise ValueError("expires_at must be in the future")
    if when > now_s + MAX_TTL_S:
        raise ValueError("expires_at must be at most 28 days ahead")
    return when


def _instant(text) -> int:
    """`INSTANT` (`2026-12-24T18:00:00Z`, `...+01:00`), in whole seconds, rounded up. Without
    an offset a time is refused: whose local time would it be?"""
    problem = ("expires_at must be an ISO 8601 date and time with its offset, "
               "e.g. 2026-12-24T18:00:00Z")
    if not isinstance(text, str) or INSTANT.fullmatch(text) is None:
        raise ValueError(problem)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:  # a day or an hour that does not exist
        raise ValueError(problem) from None
    return math.ceil(when.timestamp())
