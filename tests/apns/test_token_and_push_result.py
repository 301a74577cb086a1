"""Provider-token schedule and result classification, without a network."""

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from owlmetry.apns import ProviderToken, PushResult, ResultKind
from owlmetry.apns.push_result import from_answer, is_transient, parse_error_body

from .identity import KEY_ID, TEAM_ID


class FakeClock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


def test_token_is_es256_with_kid_iss_iat(auth_key):
    clock = FakeClock()
    token = ProviderToken(KEY_ID, TEAM_ID, auth_key, clock=clock)
    generation, bearer = token.current()
    assert bearer.startswith(b"bearer ")
    public = serialization.load_pem_private_key(auth_key, None).public_key()
    raw = bearer[7:].decode()
    assert jwt.get_unverified_header(raw) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(raw, public, algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"iss": TEAM_ID, "iat": int(clock.now)}
    assert generation == 1


def test_token_is_renewed_at_45_minutes_not_before(auth_key):
    clock = FakeClock()
    token = ProviderToken(KEY_ID, TEAM_ID, auth_key, clock=clock)
    first = token.current()
    clock.now += 44 * 60
    assert token.current() == first
    clock.now += 60
    second = token.current()
    assert second[0] == 2 and second[1] != first[1]


def test_expired_renews_once_per_generation(auth_key):
    token = ProviderToken(KEY_ID, TEAM_ID, auth_key, clock=FakeClock())
    generation, _ = token.current()
    for _ in range(50):  # fifty streams saw the same ExpiredProviderToken
        token.expired(generation)
    assert token.generation == generation + 1


def test_results_tell_delete_from_retry_from_permanent():
    gone = from_answer(410, "Unregistered", 1_700_000_000_000, "id", 1)
    assert gone.kind is ResultKind.UNREGISTERED and gone.token_invalid and gone.permanent
    assert gone.timestamp_ms == 1_700_000_000_000
    bad = from_answer(400, "DeviceTokenNotForTopic", None, "id", 1)
    assert bad.kind is ResultKind.BAD_DEVICE_TOKEN and bad.token_invalid
    busy = from_answer(503, "ServiceUnavailable", None, "id", 6)
    assert busy.retry_later and not busy.permanent and not busy.token_invalid
    topic = from_answer(400, "BadTopic", None, "id", 1)
    assert topic.permanent and not topic.retry_later and not topic.token_invalid
    assert PushResult(ResultKind.DELIVERED, 200).ok


def test_transient_reasons_follow_apple():
    assert is_transient(429, "TooManyRequests")
    assert is_transient(500, "InternalServerError") and is_transient(503, "Shutdown")
    for reason in ("BadDeviceToken", "Unregistered", "PayloadTooLarge", "Forbidden"):
        assert not is_transient(400, reason)


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"[]", b"null", b'"x"', b"[" * 100_000,
                                  b'{"reason": 7, "timestamp": "soon"}', b'{"timestamp": true}'])
def test_an_error_body_of_junk_reads_as_no_reason(body):
    assert parse_error_body(body) == (None, None)
