"""APNs requests as they go on the wire: Apple's device-token and payload-size rules, the body,
and the pre-encoded HPACK fields of a request (`owlmetry.h2client.hpack_encoder`: literals
without indexing, valid on every connection for ever).

The constant headers of a push kind (`apns-topic`, `apns-push-type`, ...) are encoded once, and
a push only adds its `:path` and its `apns-id`. Must not do I/O.
"""

import itertools
import json
import re
import uuid

from owlmetry.h2client.exchange import Request
from owlmetry.h2client.hpack_encoder import PATH_PREFIXES, POST, literal
from owlmetry.h2client.hpack_encoder import path_field as _path_field

try:
    import orjson
except ImportError:  # optional speed-up
    orjson = None

MAX_PAYLOAD = 4096
MAX_VOIP_PAYLOAD = 5120

# An APNs device token: 8 to 100 bytes, written as hex (16 to 200 characters, even length).
_HEX = re.compile("[0-9a-fA-F]+")


def payload_limit(push_type: str) -> int:
    """Apple's limit on a push's body in bytes: larger for VoIP pushes."""
    return MAX_VOIP_PAYLOAD if push_type == "voip" else MAX_PAYLOAD


def is_device_token(text) -> bool:
    """True if `text` is an APNs device token in hex (upper or lower case)."""
    return (isinstance(text, str) and 16 <= len(text) <= 200 and not len(text) % 2
            and _HEX.fullmatch(text) is not None)


def path_field(token_hex: str) -> bytes:
    return _path_field(b"/3/device/" + token_hex.encode())


def options_field(topic: str, push_type: str, priority: int, expiration: int | None,
                  collapse_id: str | None) -> bytes:
    fields = [literal(b"apns-topic", topic.encode()),
              literal(b"apns-push-type", push_type.encode()),
              literal(b"apns-priority", str(priority).encode())]
    if expiration is not None:
        fields.append(literal(b"apns-expiration", str(expiration).encode()))
    if collapse_id is not None:
        fields.append(literal(b"apns-collapse-id", collapse_id.encode()))
    return b"".join(fields)


class PushRequest(Request):
    """A push's request and the `apns-id` it carries (bytes), which APNs answers with."""

    __slots__ = ("apns_id",)

    def __init__(self, path: bytes, fields: bytes, body: bytes, apns_id: bytes):
        # Request's fields set here rather than through super(): a call less per push.
        self.method, self.path, self.fields, self.body = POST, path, fields, body
        self.apns_id = apns_id


# Each push names itself: APNs answers with the request's `apns-id` when it has one, so the
# answer's copy (a Huffman string decoded per push, an eighth of a fan-out's CPU) need not be
# read. A canonical UUID: 24 random characters per process, then a 48-bit count. A push sent
# again is the same request and keeps its id.
_APNS_ID_PREFIX = str(uuid.uuid4())[:24].encode()
_APNS_ID_COUNT = itertools.count(int.from_bytes(uuid.uuid4().bytes[:6], "big"))
_APNS_ID_FIELD = literal(b"apns-id", b"\0" * 36)[:-36]  # the name and the length, then the id


def request(token_hex: str, options: bytes, body: bytes) -> PushRequest:
    """The core's request for one push: POST /3/device/<token> with a push kind's `options`
    and an `apns-id` of its own."""
    path = b"/3/device/" + token_hex.encode()
    apns_id = b"%s%012x" % (_APNS_ID_PREFIX, next(_APNS_ID_COUNT) & 0xFFFF_FFFF_FFFF)
    fields = options + _APNS_ID_FIELD + apns_id
    if len(path) < 127:  # every real token (at most 200 hex digits): no general encoder
        return PushRequest(PATH_PREFIXES[len(path)] + path, fields, body, apns_id)
    return PushRequest(_path_field(path), fields, body, apns_id)


# Apple's apns-topic for push types that do not go to the app's bundle id itself.
TOPIC_SUFFIXES = {
    "voip": ".voip", "complication": ".complication", "fileprovider": ".pushkit.fileprovider",
    "liveactivity": ".push-type.liveactivity", "location": ".location-query",
    "pushtotalk": ".voip-ptt", "widgets": ".push-type.widgets", "controls": ".push-type.controls",
}


def topic_for(bundle_id: str, push_type: str) -> str:
    return bundle_id + TOPIC_SUFFIXES.get(push_type, "")


def encode_payload(payload: bytes | dict) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if orjson is not None:
        return orjson.dumps(payload)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
