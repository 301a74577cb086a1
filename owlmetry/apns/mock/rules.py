"""Apple's rules for a provider API request, as the mock applies them: a `Verdict` every time.

Owns what makes a request acceptable (POST /3/device/<token>, an ES256 provider token signed
by the expected key and team and under an hour old, apns-topic, apns-push-type, priority,
expiration, collapse id, payload size and JSON) and the status and reason Apple answers when
it is not. Must not count requests, inject faults or do I/O.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization

from ..wire import is_device_token, payload_limit

PUSH_TYPES = frozenset({"alert", "background", "complication", "controls", "fileprovider",
                        "liveactivity", "location", "mdm", "pushtotalk", "voip", "widgets"})
DEVICE_PATH = b"/3/device/"
PROVIDER_TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the mock does with one complete request: answer `status`, with Apple's `reason`
    and any `extra` fields of the error body; or, with `reset`, reset the stream instead.
    An accepted request (200) carries its JSON `payload`."""

    status: int
    reason: str | None = None
    extra: dict | None = None
    payload: dict | None = None
    reset: bool = False

    @property
    def accepted(self) -> bool:
        return self.status == 200


PASSED = Verdict(200)  # a rule with nothing to object to (not yet a whole request)
RESET = Verdict(0, reset=True)


def device_token(headers: dict) -> str:
    """The device token a request's :path names ("" for any other path)."""
    path = headers.get(b":path", b"")
    return path[len(DEVICE_PATH):].decode(errors="replace") if path.startswith(DEVICE_PATH) else ""


def check_address(headers: dict) -> Verdict:
    """The method, the path and the device token in it."""
    if headers.get(b":method") != b"POST":
        return Verdict(405, "MethodNotAllowed")
    path = headers.get(b":path", b"")
    if not path.startswith(DEVICE_PATH):
        return Verdict(404, "BadPath")
    if not is_device_token(path[len(DEVICE_PATH):].decode("latin-1")):
        return Verdict(400, "BadDeviceToken")
    return PASSED


def check_request(headers: dict, body: bytes, topic_prefix: str | None) -> Verdict:
    """The apns-* headers and the payload of a request from an authenticated provider;
    `topic_prefix`, when set, is the app whose topics are allowed."""
    topic = headers.get(b"apns-topic")
    if not topic:
        return Verdict(400, "MissingTopic")
    push_type = headers.get(b"apns-push-type", b"").decode()
    if push_type not in PUSH_TYPES:
        return Verdict(400, "InvalidPushType")
    if topic_prefix is not None and not topic.decode().startswith(topic_prefix):
        return Verdict(400, "TopicDisallowed")
    priority = headers.get(b"apns-priority", b"10")
    # "background: always priority 5; priority 10 is an error" (Apple, push types).
    if priority not in (b"1", b"5", b"10") or push_type == "background" and priority == b"10":
        return Verdict(400, "BadPriority")
    if len(headers.get(b"apns-collapse-id", b"")) > 64:
        return Verdict(400, "BadCollapseId")
    if not headers.get(b"apns-expiration", b"0").isdigit():
        return Verdict(400, "BadExpirationDate")
    if not body:
        return Verdict(400, "PayloadEmpty")
    if len(body) > payload_limit(push_type):
        return Verdict(413, "PayloadTooLarge")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return Verdict(400, "BadPayload")
    return Verdict(200, payload=document)


class ProviderTokenRule:
    """Apple's provider-token rule: `authorization: bearer <ES256 JWT>` signed with the key
    `key_id` of team `team_id`, issued under an hour ago. Without a key, any bearer passes.

    A token is verified once and remembered; `on_verified(bearer)` is called the first time.
    """

    def __init__(self, auth_key_pem: str | bytes | None, key_id: str | None,
                 team_id: str | None, on_verified: Callable[[bytes], None]):
        self._public_key = _public_key(auth_key_pem) if auth_key_pem else None
        self._key_id, self._team_id = key_id, team_id
        self._on_verified = on_verified
        self._valid: dict[bytes, int] = {}  # bearer -> iat
        self._expired: set[bytes] = set()

    def expire_all(self) -> None:
        """Call every token verified so far expired (Apple's ExpiredProviderToken)."""
        self._expired.update(self._valid)

    def check(self, auth: bytes | None) -> Verdict:
        if not auth or not auth.lower().startswith(b"bearer "):
            return Verdict(403, "MissingProviderToken")
        bearer = auth[7:]
        if bearer in self._expired:
            return Verdict(403, "ExpiredProviderToken")
        iat = self._valid.get(bearer)
        if iat is None:
            if self._public_key is None:
                iat = int(time.time())
            else:
                try:
                    header = jwt.get_unverified_header(bearer)
                    claims = jwt.decode(bearer, self._public_key, algorithms=["ES256"],
                                        options={"verify_iat": False})
                    iat = int(claims["iat"])
                except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                    return Verdict(403, "InvalidProviderToken")
                if (self._key_id and header.get("kid") != self._key_id
                        or self._team_id and claims.get("iss") != self._team_id):
                    return Verdict(403, "InvalidProviderToken")
            self._valid[bearer] = iat
            self._on_verified(bearer)
        if time.time() - iat > PROVIDER_TOKEN_LIFETIME_S:
            return Verdict(403, "ExpiredProviderToken")
        return PASSED


def _public_key(pem: str | bytes):
    pem = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, password=None).public_key()
    return serialization.load_pem_public_key(pem)
