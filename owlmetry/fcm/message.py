"""The body of an FCM HTTP v1 `messages:send` request for one device, and FCM's payload rules.

Owns the contract's Android message: `notification` {title, body}; `data`, FCM's map of strings
(the producer's keys, values JSON-encoded unless they are strings, then the contract's `link`,
`type` and `notification_id`, which producer keys cannot replace); `android` with high priority,
a TTL and `notification.notification_count` = the recipient's unread count. Also how the
notification's push options (`owlmetry.push_options`) map onto the message (`android_config`),
FCM's reserved data keys and the 4,096-byte payload limit, checked once per notification at the
producer's POST. Must not do I/O.

How the payload is measured: FCM limits "the payload" of a message to 4,096 bytes without
saying byte by byte what counts. This module counts the compact UTF-8 JSON of the whole
`message` object except its `token` (`notification`, `data` and `android`, keys, quotes and
punctuation included): more than FCM can count, since it is everything the device gets plus
the delivery options, so a message that passes here is never refused by FCM for its size.
"""

import time

import orjson

from owlmetry.push_options import DEFAULT as DEFAULT_OPTIONS
from owlmetry.push_options import PushOptions

MAX_PAYLOAD = 4096
# FCM: a data key must not be "from", "message_type", or start with "google" or "gcm"
# (projects.messages reference, Message.data). Such a message is refused whole.
RESERVED_DATA_KEYS = frozenset({"from", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
CONTRACT_KEYS = ("link", "type", "notification_id")
# Past a week the notification is old news; the inbox and its badge still carry it.
DEFAULT_TTL_S = 7 * 24 * 3600
MAX_TTL_S = 28 * 24 * 3600  # FCM's longest TTL (and its default)
# The largest count a payload is checked with before it is accepted, so any real count fits.
LARGEST_COUNT = 10**9
CHECK_NOTIFICATION_ID = "00000000-0000-0000-0000-000000000000"


def payload_limit() -> int:
    """FCM's limit on a message's payload, in bytes, as this module measures it."""
    return MAX_PAYLOAD


def reserved_data_key(key: str) -> bool:
    return key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES)


def data_map(data: dict | None, link: str | None, type_: str, notification_id: str) -> dict[str, str]:
    """FCM's `data`: every value a string. ValueError names a key FCM reserves."""
    out = {}
    for key, value in (data or {}).items():
        if key in CONTRACT_KEYS:
            continue  # the contract's own keys win, as in the APNs payload
        if reserved_data_key(key):
            raise ValueError(f"data key {key!r} is reserved by FCM (\"from\", \"message_type\" "
                             "and keys starting with \"google\" or \"gcm\" are refused)")
        out[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    if link is not None:
        out["link"] = link
    out["type"] = type_
    out["notification_id"] = notification_id
    return out


# Apple's interruption levels as Android's notification priorities (they only matter before
# Android 8, where the notification channel decides instead).
NOTIFICATION_PRIORITIES = {"passive": "PRIORITY_LOW", "active": "PRIORITY_DEFAULT",
                           "time-sensitive": "PRIORITY_HIGH", "critical": "PRIORITY_MAX"}


def android_config(unread: int, ttl_s: int = DEFAULT_TTL_S,
                   options: PushOptions = DEFAULT_OPTIONS) -> dict:
    """`android`: priority HIGH for Apple's priority 10, else NORMAL (and always for a
    background push, whose data-only message has no `notification`); the TTL; `collapse_id` as
    `collapse_key` (FCM keeps the last message of a key) and as the displayed notification's
    `tag` (the new one replaces the old); a named sound, the category as `click_action`, the
    interruption level as `notification_priority`; the unread count last, unless badge none.
    Options without an Android counterpart (thread_id, mutable_content, relevance_score, a
    silent push) are not sent."""
    android = {"priority": "HIGH" if options.priority == 10 and not options.background
               else "NORMAL", "ttl": f"{ttl_s}s"}
    if options.collapse_id is not None:
        android["collapse_key"] = options.collapse_id
    if options.background:
        return android
    notification = {}
    for key, value in (("tag", options.collapse_id),
                       ("sound", None if options.sound == "default" else options.sound),
                       ("click_action", options.category),
                       ("notification_priority",
                        NOTIFICATION_PRIORITIES.get(options.interruption_level))):
        if value is not None:
            notification[key] = value
    if options.badge == "unread":
        notification["notification_count"] = unread
    if notification:
        android["notification"] = notification
    return android


def notification_fields(content) -> dict[str, str]:
    fields = {"title": content.title}
    if content.body is not None:
        fields["body"] = content.body
    return fields


def ttl_for(options: PushOptions, now_s: int | None = None) -> int:
    """The TTL of a message sent now: the seconds left until the notification's expiry (0 to
    try once), or DEFAULT_TTL_S without one."""
    left = options.ttl_s(int(time.time()) if now_s is None else now_s, DEFAULT_TTL_S)
    return min(left, MAX_TTL_S)  # a clock set back must not make a TTL FCM refuses


def build_message(token: str, content, notification_id: str, unread: int,
                  ttl_s: int | None = None) -> dict:
    """The `message` object for one device. `content` has `type`, `title`, `body`, `link`,
    `data` and `options` (a NotificationContent); `ttl_s` defaults to `ttl_for` its options.
    A background push is data-only: no `notification`."""
    options = content.options
    message = {"token": token}
    if not options.background:
        message["notification"] = notification_fields(content)
    message["data"] = data_map(content.data, content.link, content.type, notification_id)
    message["android"] = android_config(
        unread, ttl_for(options) if ttl_s is None else ttl_s, options)
    return message


def payload_size(message: dict) -> int:
    """The bytes FCM's 4,096-byte limit is checked against (see the module's docstring)."""
    return len(orjson.dumps({key: value for key, value in message.items() if key != "token"}))


def check_content(content) -> None:
    """For the producer's POST: ValueError if this notification cannot go to Android devices
    (a reserved data key, or a payload over the limit with the largest unread count)."""
    size = payload_size(build_message("", content, CHECK_NOTIFICATION_ID, LARGEST_COUNT))
    if size > MAX_PAYLOAD:
        raise ValueError(f"the notification makes an FCM payload of {size} bytes; "
                         f"the limit is {MAX_PAYLOAD}")


class MessageTemplate:
    """The request body `{"message": {...}}` of one notification, made once and finished per
    device with its token, the notification's id and the unread count; the same bytes as
    `orjson.dumps({"message": build_message(...)})`."""

    __slots__ = ("_after_id", "_after_token", "_badge", "_end")

    def __init__(self, content, ttl_s: int | None = None):
        options = content.options
        data = data_map(content.data, content.link, content.type, CHECK_NOTIFICATION_ID)
        del data["notification_id"]  # written last, per notification
        data_head = orjson.dumps(data)[:-1] + (b"," if data else b"")
        notification = (b"" if options.background else
                        b',"notification":' + orjson.dumps(notification_fields(content)))
        self._after_token = notification + b',"data":' + data_head + b'"notification_id":'
        android = orjson.dumps(android_config(
            0, ttl_for(options) if ttl_s is None else ttl_s, options))
        self._badge = options.badge == "unread" and not options.background
        if self._badge:
            if not android.endswith(b'"notification_count":0}}'):
                raise ValueError("unexpected android config encoding")
            self._after_id = b'},"android":' + android[:-3]
            self._end = b"}}}}"
        else:
            self._after_id = b'},"android":' + android
            self._end = b"}}"

    def render(self, token: str, notification_id: str, unread: int) -> bytes:
        return b"%s%s%s%s%s%s%s" % (b'{"message":{"token":', orjson.dumps(token),
                                     self._after_token, orjson.dumps(notification_id),
                                     self._after_id, b"%d" % unread if self._badge else b"",
                                     self._end)
