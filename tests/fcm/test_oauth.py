"""Access tokens as a sender sees them, against the mock's token endpoint (which checks the
RS256 assertion against the service account's key): one exchange however many senders wait,
a refresh ahead of expiry that nobody waits for, and one more exchange after a 401."""

import asyncio
import dataclasses

import jwt
import pytest

from owlmetry.fcm import AccessTokens, Decision, TokenError, classify
from owlmetry.fcm.mock import MockFCM
from owlmetry.fcm.oauth import SCOPE, assertion

from .conftest import send, send_body
from .h2client import H2Client
from .identity import CLIENT_EMAIL, KEY_ID, rsa_pem


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_assertion_is_googles_jwt_bearer_grant(account):
    token = assertion(account, 1_700_000_000.4)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"iss": CLIENT_EMAIL, "scope": SCOPE, "aud": account.token_uri,
                      "iat": 1_700_000_000, "exp": 1_700_003_600}


async def test_a_thousand_waiting_senders_cause_one_token_request(mock, tokens, h2):
    got = await asyncio.gather(*(tokens.current() for _ in range(1000)))
    assert len(set(got)) == 1
    assert mock.stats.token_requests == 1 and mock.stats.tokens_issued == 1
    answer = await send(h2, got[0], send_body("device-1"))
    assert answer.status == 200


async def test_refreshed_ahead_of_expiry_by_one_request_nobody_waits_for(mock, account, tls_files):
    clock = Clock()
    tokens = AccessTokens(account, ca_file=tls_files[0], clock=clock)
    try:
        assert tokens.cached() is None  # nothing yet: senders must wait for the first
        first = await tokens.current()
        assert tokens.cached() == first and tokens.refreshing.done()
        clock.now += 3600 - 200  # inside the last 5 minutes, still well before expiry
        during = await asyncio.gather(*(tokens.current() for _ in range(1000)))
        assert set(during) == {first}  # handed out at once, while one refresh runs
        second = await tokens.refreshing
        assert second != first and await tokens.current() == second
        assert mock.stats.token_requests == 2
    finally:
        await tokens.close()


async def test_a_token_about_to_expire_is_not_handed_out(mock, account, tls_files):
    clock = Clock()
    tokens = AccessTokens(account, ca_file=tls_files[0], clock=clock)
    try:
        first = await tokens.current()
        clock.now += 3600 - 10
        assert tokens.cached() is None
        assert set(await asyncio.gather(*(tokens.current() for _ in range(100)))) != {first}
        assert mock.stats.token_requests == 2
    finally:
        await tokens.close()


async def test_a_401_refreshes_once_for_all_senders_that_got_it(mock, tokens, h2):
    old = await tokens.current()
    mock.expire_access_tokens()
    answers = await asyncio.gather(*(send(h2, old, send_body(f"device-{i}")) for i in range(100)))
    decisions = {classify(a.status, bytes(a.body)).decision for a in answers}
    assert decisions == {Decision.REFRESH}
    for _ in answers:
        tokens.invalidate(old)
    fresh = await asyncio.gather(*(tokens.current() for _ in range(100)))
    assert len(set(fresh)) == 1 and fresh[0] != old
    assert mock.stats.token_requests == 2
    tokens.invalidate(old)  # a late 401 for the old token changes nothing
    assert await tokens.current() == fresh[0] and mock.stats.token_requests == 2
    assert (await send(h2, fresh[0], send_body("device-0"))).status == 200


async def test_a_second_401_with_a_fresh_token_names_the_configuration(mock, tokens, h2):
    mock.expire_access_tokens()
    answer = await send(h2, "ya29.never-issued", send_body("device-1"))
    verdict = classify(answer.status, bytes(answer.body), refreshed=True)
    assert verdict.decision is Decision.BACKOFF and "FCM_SERVICE_ACCOUNT" in verdict.reason


async def test_the_mocks_tokens_expire_after_their_lifetime(base_account, tls_files, behaviour):
    clock = Clock()
    behaviour.token_lifetime_s = 120
    mock = MockFCM(*tls_files, base_account, behaviour, clock=clock)
    await mock.start()
    account = dataclasses.replace(base_account, token_uri=mock.token_uri)
    tokens = AccessTokens(account, ca_file=tls_files[0], clock=clock)
    h2 = await H2Client.connect(mock.port, tls_files[0])
    try:
        token = await tokens.current()
        assert (await send(h2, token, send_body("device-1"))).status == 200
        clock.now += 121
        assert (await send(h2, token, send_body("device-1"))).status == 401
        fresh = await tokens.current()  # the client knew: expires_in was 120
        assert fresh != token and (await send(h2, fresh, send_body("device-1"))).status == 200
    finally:
        await h2.close()
        await tokens.close()
        await mock.stop()


async def test_a_key_the_endpoint_does_not_know_is_a_configuration_error(mock, account, tls_files):
    stranger = dataclasses.replace(account, private_key=rsa_pem())
    tokens = AccessTokens(stranger, ca_file=tls_files[0])
    try:
        with pytest.raises(TokenError) as caught:
            await tokens.current()
        assert not caught.value.transient
        assert CLIENT_EMAIL in str(caught.value) and "FCM_SERVICE_ACCOUNT" in str(caught.value)
        assert "PRIVATE" not in str(caught.value)
        assert mock.stats.token_refusals == {"invalid_grant": 1}
    finally:
        await tokens.close()


async def test_an_unreachable_endpoint_is_transient_and_not_hammered(account, tls_files):
    from tests.ports import free_port

    gone = dataclasses.replace(account, token_uri=f"https://127.0.0.1:{free_port()}/token")
    tokens = AccessTokens(gone, ca_file=tls_files[0])
    try:
        with pytest.raises(TokenError) as caught:
            await tokens.current()
        assert caught.value.transient
        with pytest.raises(TokenError):
            await tokens.current()  # right after a failure: answered without another try
        assert tokens.requests == 1
    finally:
        await tokens.close()
