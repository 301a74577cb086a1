"""APNs requests as they go on the wire: Apple's device-token and payload-size rules, the body,
and the pre-encoded HPACK fields of a request.

Every field is encoded as an HPACK literal *without indexing*, so no header ever enters the
peer's dynamic table and a field encoded once stays valid on every connection for ever: the
constant headers of a push kind are encoded once, and a push only adds its `:path`. (Apple asks
for `:path` and `authorization` to stay out of its small dynamic table anyway.) Must not do I/O.
"""

import json
import re

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


# HPACK static table indices (RFC 7541, appendix A).
_AUTHORITY, _PATH, _AUTHORIZATION = 1, 4, 23
# :method POST and :scheme https are whole entries of the static table.
REQUEST_PREFIX = b"\x83\x87"
# "Dynamic table size update to 0", sent first on each connection: this encoder keeps no table,
# so no later SETTINGS_HEADER_TABLE_SIZE from the peer can oblige it to signal anything.
TABLE_SIZE_ZERO = b"\x20"


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return _integer(len(raw), 7, 0) + raw


def literal(name: bytes | int, value: bytes) -> bytes:
    """One header field as 'literal without indexing'; `name` is a static index or the name."""
    if isinstance(name, int):
        return _integer(name, 4, 0) + _string(value)
    return b"\x00" + _string(name) + _string(value)


def authority_field(host: str, port: int) -> bytes:
    return literal(_AUTHORITY, (host if port == 443 else f"{host}:{port}").encode())


def authorization_field(bearer: bytes) -> bytes:
    return literal(_AUTHORIZATION, bearer)


def path_field(token_hex: str) -> bytes:
    path = b"/3/device/" + token_hex.encode()
    if len(path) < 127:  # every real token: a one-byte length, no need for the general encoder
        return _SHORT_PATH_PREFIXES[len(path)] + path
    return literal(_PATH, path)


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


_SHORT_PATH_PREFIXES = [bytes((_PATH, n)) for n in range(127)]


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


class Request:
    """What a connection needs to put one push on a stream."""

    __slots__ = ("body", "options_field", "path_field")

    def __init__(self, path: bytes, options: bytes, body: bytes):
        self.path_field = path
        self.options_field = options
        self.body = body
