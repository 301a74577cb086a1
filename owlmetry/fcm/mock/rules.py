"""FCM's rules as the mock applies them: the OAuth2 token endpoint and `messages:send`, an
`Answer` for every request, in Google's error format.

Owns what makes a token request acceptable (the JWT-bearer grant; an RS256 assertion signed by
the service account's key, from its `client_email`, for the firebase.messaging scope, addressed
to this endpoint, valid for an hour at most and not expired), the access tokens issued and
their expiry, and what makes a send acceptable (a current bearer token, the project, the body's
shape, a registration token, data values as strings and not reserved, priority, TTL, the
Android fields FCM knows (unknown names, strings, `notification_priority`), and the
payload size as `owlmetry.fcm.message` measures it). Must not count, inject faults or do I/O.
"""

import itertools
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from owlmetry.device_tokens import FCM_TOKEN

from ..answers import BAD_REQUEST_TYPE, FCM_ERROR_TYPE
from ..message import MAX_PAYLOAD, MAX_TTL_S, payload_size, reserved_data_key
from ..oauth import ASSERTION_LIFETIME_S, GRANT_TYPE, SCOPE
from ..service_account import ServiceAccount

# The scopes Google lets send FCM messages (FCM HTTP v1 "Authorize send requests"); the Admin
# SDKs ask for cloud-platform among others.
FCM_SCOPES = frozenset({SCOPE, "https://www.googleapis.com/auth/cloud-platform"})

SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
TOKEN_PATH = "/token"
MESSAGE_FIELDS = frozenset({"name", "data", "notification", "android", "webpush", "apns",
                            "fcm_options", "fcmOptions", "token", "topic", "condition"})
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
# FCM HTTP v1's AndroidConfig and AndroidNotification (projects.messages reference).
ANDROID_FIELDS = frozenset({"collapse_key", "priority", "ttl", "restricted_package_name",
                            "data", "notification", "fcm_options", "direct_boot_ok"})
ANDROID_NOTIFICATION_FIELDS = frozenset({
    "title", "body", "icon", "color", "sound", "tag", "click_action", "body_loc_key",
    "body_loc_args", "title_loc_key", "title_loc_args", "channel_id", "ticker", "sticky",
    "event_time", "local_only", "notification_priority", "default_sound",
    "default_vibrate_timings", "default_light_settings", "vibrate_timings", "visibility",
    "notification_count", "light_settings", "image", "bypass_proxy_notification", "proxy"})
ANDROID_STRINGS = ("tag", "sound", "click_action")  # of android.notification
NOTIFICATION_PRIORITIES = frozenset({"PRIORITY_UNSPECIFIED", "PRIORITY_MIN", "PRIORITY_LOW",
                                     "PRIORITY_DEFAULT", "PRIORITY_HIGH", "PRIORITY_MAX"})
TTL = re.compile(r"(\d+)(\.\d{1,9})?s")
CLOCK_SKEW_S = 60  # Google tolerates a little; an assertion from the future beyond it is refused
UNAUTHENTICATED_TEXT = ("Request had invalid authentication credentials. Expected OAuth 2 access "
                        "token, login cookie or other valid authentication credential.")
JSON = (b"content-type", b"application/json; charset=UTF-8")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the mock does with one complete request: answer `status` with `body` and `headers`,
    or, with `reset`, reset the stream. `outcome` is what stats count it as ("OK" or FCM's code);
    `token` the registration token it named; `message` the accepted message."""

    status: int
    body: bytes = b""
    headers: tuple = ()
    reset: bool = False
    outcome: str = ""
    token: str = ""
    message: dict | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200


def fcm_error(status: int, rpc_status: str, message: str, fcm_code: str | None = None,
              fields: tuple = (), headers: tuple = ()) -> Answer:
    """Google's error body: {"error": {"code", "message", "status", "details"}}; `fields` are
    (field, description) BadRequest violations."""
    details = []
    if fcm_code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": fcm_code})
    if fields:
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [
            {"field": field, "description": description} if field else {"description": description}
            for field, description in fields]})
    error = {"code": status, "message": message, "status": rpc_status}
    if details:
        error["details"] = details
    return Answer(status, orjson.dumps({"error": error}), (JSON, *headers),
                  outcome=fcm_code or rpc_status)


def invalid(message: str, field: str | None = None, fcm: bool = True) -> Answer:
    return fcm_error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT" if fcm else None,
                     ((field, message),))


def oauth_error(error: str, description: str) -> Answer:
    return Answer(400, orjson.dumps({"error": error, "error_description": description}), (JSON,),
                  outcome=error)


class AccessTokenRule:
    """Issues access tokens for one service account and knows which are current.

    `lifetime_s()` is read at each issue (the behaviour may change between phases);
    `audiences()` are the URLs an assertion may be addressed to (this endpoint's).
    """

    def __init__(self, account: ServiceAccount, lifetime_s: Callable[[], int],
                 audiences: Callable[[], set[str]], clock: Callable[[], float] = time.monotonic):
        # The account was checked when it was parsed; the mock only needs its public half.
        key = serialization.load_pem_private_key(account.private_key.encode(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        self._public_key = key.public_key()
        self._email = account.client_email
        self._lifetime_s = lifetime_s
        self._audiences = audiences
        self._clock = clock
        self._expiry: dict[str, float] = {}  # access token -> expiry on `clock`

    def issue(self, form: bytes) -> Answer:
        """The token endpoint: a form-encoded JWT-bearer grant in, a token or OAuth's error out."""
        fields = urllib.parse.parse_qs(form.decode("latin-1"))
        if fields.get("grant_type") != [GRANT_TYPE]:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: "
                               + ",".join(fields.get("grant_type", [])))
        assertion = (fields.get("assertion") or [""])[0]
        try:
            claims = jwt.decode(assertion, self._public_key, algorithms=["RS256"],
                                audience=sorted(self._audiences()), leeway=CLOCK_SKEW_S,
                                options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.InvalidAudienceError:
            return oauth_error("invalid_grant", "Invalid JWT: aud is not this token endpoint")
        except jwt.ExpiredSignatureError:
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token "
                               "(60 minutes) and in a reasonable timeframe.")
        except jwt.PyJWTError:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != self._email:
            return oauth_error("invalid_grant", "Invalid JWT: iss is not the service account")
        if not FCM_SCOPES & set(str(claims.get("scope", "")).split()):
            return oauth_error("invalid_scope", "The firebase.messaging scope is missing.")
        try:
            life = int(claims["exp"]) - int(claims["iat"])
        except (TypeError, ValueError):
            life = -1
        if not 0 < life <= ASSERTION_LIFETIME_S:
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token "
                               "(60 minutes) and in a reasonable timeframe.")
        token = "ya29.mock-" + secrets.token_urlsafe(24)
        lifetime = self._lifetime_s()
        self._expiry[token] = self._clock() + lifetime
        body = {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}
        return Answer(200, orjson.dumps(body), (JSON,), outcome="token")

    def check(self, authorization: bytes | None) -> Answer | None:
        """None if `authorization` carries a current access token; else the 401."""
        if authorization and authorization[:7].lower() == b"bearer ":
            expiry = self._expiry.get(authorization[7:].decode("latin-1"))
            if expiry is not None and self._clock() < expiry:
                return None
        return fcm_error(401, "UNAUTHENTICATED", UNAUTHENTICATED_TEXT)

    def expire_all(self) -> None:
        """Every token issued so far is expired from now on."""
        self._expiry = dict.fromkeys(self._expiry, 0.0)


def send_project(path: str) -> str | None:
    match = SEND_PATH.fullmatch(path)
    return match[1] if match else None


def message_token(document) -> str:
    """The registration token a parsed send body names ("" if none)."""
    message = document.get("message") if isinstance(document, dict) else None
    token = message.get("token") if isinstance(message, dict) else None
    return token if isinstance(token, str) else ""


_ids = itertools.count(1)


def check_send(project: str, document, invalid_prefixes: tuple[str, ...]) -> Answer:
    """A parsed `messages:send` body for `project` (the caller checked the bearer and the
    project): accepted (200, the message's `name`), or FCM's 400."""
    if not isinstance(document, dict) or not isinstance(document.get("message"), dict):
        return invalid("Invalid JSON payload received: message is required", "message", fcm=False)
    for key in document:
        if key not in ("message", "validate_only", "validateOnly"):
            return invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.',
                           fcm=False)
    message = document["message"]
    for key in message:
        if key not in MESSAGE_FIELDS:
            return invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'message\': '
                           "Cannot find field.", fcm=False)
    if sum(key in message for key in ("token", "topic", "condition")) != 1:
        return invalid("Recipient of the message is not set.", "message")
    token = message.get("token")
    if (not isinstance(token, str) or not FCM_TOKEN.fullmatch(token)
            or token.startswith(invalid_prefixes)):
        answer = fcm_error(400, "INVALID_ARGUMENT",
                           "The registration token is not a valid FCM registration token",
                           "INVALID_ARGUMENT", (("message.token", "Invalid registration token"),))
        return _with_token(answer, token if isinstance(token, str) else "")
    problem = _shape_problem(message)
    if problem is not None:
        return _with_token(problem, token)
    if payload_size(message) > MAX_PAYLOAD:
        return _with_token(fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
                           token)
    name = f"projects/{project}/messages/0:{next(_ids)}%owlmock"
    return Answer(200, orjson.dumps({"name": name}), (JSON,), outcome="OK", token=token,
                  message=message)


def _with_token(answer: Answer, token: str) -> Answer:
    return Answer(answer.status, answer.body, answer.headers, answer.reset, answer.outcome, token)


def _shape_problem(message: dict) -> Answer | None:
    notification = message.get("notification")
    if notification is not None:
        if not isinstance(notification, dict):
            return invalid("Invalid value at 'message.notification'", "message.notification")
        for key, value in notification.items():
            if key not in NOTIFICATION_FIELDS or not isinstance(value, str):
                return invalid(f"Invalid value at 'message.notification.{key}'",
                               f"message.notification.{key}")
    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            return invalid("Invalid value at 'message.data'", "message.data")
        for i, (key, value) in enumerate(data.items()):
            if not isinstance(value, str):
                return invalid(f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)",
                               f"message.data[{i}].value")
            if reserved_data_key(key):
                return invalid(f"Invalid data payload key: {key}", "message.data")
    android = message.get("android")
    if android is not None:
        if not isinstance(android, dict):
            return invalid("Invalid value at 'message.android'", "message.android")
        unknown = _unknown_name(android, ANDROID_FIELDS, "message.android")
        if unknown is not None:
            return unknown
        priority = android.get("priority", "NORMAL")
        if not isinstance(priority, str) or priority.upper() not in ("NORMAL", "HIGH"):
            return invalid("Invalid value at 'message.android.priority'", "message.android.priority")
        ttl = android.get("ttl")
        if ttl is not None:
            match = TTL.fullmatch(ttl) if isinstance(ttl, str) else None
            if match is None or int(match[1]) > MAX_TTL_S:
                return invalid("Invalid value at 'message.android.ttl' (google.protobuf.Duration)",
                               "message.android.ttl")
        notification = android.get("notification", {})
        if not isinstance(notification, dict):
            return invalid("Invalid value at 'message.android.notification'",
                           "message.android.notification")
        unknown = _unknown_name(notification, ANDROID_NOTIFICATION_FIELDS,
                                "message.android.notification")
        if unknown is not None:
            return unknown
        strings = [("android", android, "collapse_key"), *(
            ("android.notification", notification, key) for key in ANDROID_STRINGS)]
        for where, fields, key in strings:
            value = fields.get(key)
            if value is not None and not isinstance(value, str):
                return invalid(f"Invalid value at 'message.{where}.{key}' (TYPE_STRING)",
                               f"message.{where}.{key}")
        if notification.get("notification_priority", "PRIORITY_UNSPECIFIED") \
                not in NOTIFICATION_PRIORITIES:
            return invalid("Invalid value at 'message.android.notification.notification_priority'",
                           "message.android.notification.notification_priority")
        count = notification.get("notification_count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                                  or not 0 <= count < 2**31):
            return invalid("Invalid value at 'message.android.notification.notification_count'",
                           "message.android.notification.notification_count")
    return None


def _unknown_name(fields: dict, known: frozenset, where: str) -> Answer | None:
    for key in fields:
        if key not in known:
            return invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                           "Cannot find field.", fcm=False)
    return None
