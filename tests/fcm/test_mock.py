"""The mock FCM as tests and benchmarks lean on it: Google's token endpoint refuses what Google
refuses, the connection faults (GOAWAY every N streams, a low stream limit, dropped sockets,
reset streams) happen and are counted, HTTP/1.1 clients are served on the same port, and it
runs in a process of its own with its counters over HTTP."""

import asyncio
import json
import sys
import time
import urllib.parse
import urllib.request

import aiohttp
import jwt
import pytest

from owlmetry.fcm import AccessTokens
from owlmetry.fcm.oauth import GRANT_TYPE, SCOPE

from .conftest import SEND_PATH, send, send_body
from .h2client import H2Client, Refused
from .identity import CLIENT_EMAIL, service_account_json


async def post_form(mock, tls_files, fields: dict) -> tuple[int, dict]:
    import ssl
    context = ssl.create_default_context(cafile=tls_files[0])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(mock.token_uri, data=urllib.parse.urlencode(fields),
                                headers={"content-type": "application/x-www-form-urlencoded"}) as r:
            return r.status, await r.json()


def signed(fcm_key: str, mock, **claims) -> str:
    now = int(time.time())
    body = {"iss": CLIENT_EMAIL, "scope": SCOPE, "aud": mock.token_uri, "iat": now, "exp": now + 3600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, fcm_key, algorithm="RS256")


@pytest.mark.parametrize(("claims", "error"), [
    ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
    ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant"),
    ({"scope": "https://www.googleapis.com/auth/cloud-platform.read-only"}, "invalid_scope"),
    ({"exp": int(time.time()) + 7200}, "invalid_grant"),  # longer than an hour
    ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "invalid_grant"),  # expired
    ({"exp": None}, "invalid_grant"),
])
async def test_the_token_endpoint_refuses_what_google_refuses(mock, tls_files, fcm_key, claims, error):
    status, body = await post_form(mock, tls_files, {"grant_type": GRANT_TYPE,
                                                     "assertion": signed(fcm_key, mock, **claims)})
    assert (status, body["error"]) == (400, error)
    assert mock.stats.tokens_issued == 0 and mock.stats.token_refusals == {error: 1}


async def test_the_token_endpoint_wants_the_jwt_bearer_grant(mock, tls_files, fcm_key):
    status, body = await post_form(mock, tls_files, {"grant_type": "client_credentials",
                                                     "assertion": signed(fcm_key, mock)})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await post_form(mock, tls_files, {"grant_type": GRANT_TYPE,
                                                     "assertion": signed(fcm_key, mock)})
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600


async def test_a_token_the_endpoint_never_issued_is_401(mock, h2):
    response = await send(h2, "ya29.forged", send_body("device-1"))
    assert response.status == 401 and not mock.stats.delivered


async def send_all(port, ca_file, access_token, tokens) -> int:
    """Send to every token once, one at a time, opening a new connection whenever the mock
    sends one away; the number of connections used."""
    client, used, pending = None, 0, list(tokens)
    while pending:
        if client is None or client.going_away:
            if client is not None:
                await client.close()
            client, used = await H2Client.connect(port, ca_file), used + 1
        try:
            assert (await send(client, access_token, send_body(pending[0]))).status == 200
            pending.pop(0)
        except Refused:
            pass  # above the GOAWAY's last stream: never processed, so sent again
    await client.close()
    return used


async def test_goaway_every_n_streams_loses_and_repeats_nothing(mock, behaviour, tokens, tls_files):
    behaviour.goaway_after = 10
    devices = [f"device-{i}" for i in range(35)]
    used = await send_all(mock.port, tls_files[0], await tokens.current(), devices)
    assert used == 4 and mock.stats.goaways_sent == 3
    summary = mock.stats.summary()
    assert summary["unique_delivered"] == 35 and summary["duplicate_delivered"] == 0


async def test_a_low_stream_limit_is_advertised_and_kept(mock, behaviour, tokens, tls_files):
    behaviour.max_streams = 3
    client = await H2Client.connect(mock.port, tls_files[0])
    try:
        assert client.max_streams == 3
        access = await tokens.current()
        answers = await asyncio.gather(*(send(client, access, send_body(f"device-{i}"))
                                         for i in range(50)))
        assert {a.status for a in answers} == {200}
        assert mock.stats.max_streams_open == 3
    finally:
        await client.close()


async def test_a_dropped_connection_records_the_answers_it_lost(mock, behaviour, tokens, h2):
    behaviour.drop_after = 3
    access = await tokens.current()
    for i in (1, 2):
        assert (await send(h2, access, send_body(f"device-{i}"))).status == 200
    with pytest.raises(ConnectionError):
        await send(h2, access, send_body("device-3"))
    assert mock.stats.lost_answers == ["device-3"] and mock.stats.delivered["device-3"] == 1


async def test_a_reset_stream(mock, behaviour, tokens, h2):
    behaviour.reset_tokens["device-1"] = 1
    access = await tokens.current()
    with pytest.raises(ConnectionError, match="reset"):
        await send(h2, access, send_body("device-1"))
    assert (await send(h2, access, send_body("device-1"))).status == 200
    assert mock.stats.outcomes == {"RESET": 1, "OK": 1}


async def test_http1_clients_are_served_on_the_same_port(mock, tokens, tls_files):
    import ssl
    context = ssl.create_default_context(cafile=tls_files[0])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        headers = {"authorization": f"Bearer {await tokens.current()}"}
        async with session.post(mock.url + SEND_PATH, data=send_body("device-1"),
                                headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["name"].startswith("projects/owl-test/messages/")
    assert mock.stats.delivered["device-1"] == 1 and mock.stats.connections_opened == 0


async def test_the_mock_runs_out_of_process(fcm_key, base_account, tls_files, tmp_path):
    import dataclasses
    path = tmp_path / "service-account.json"
    path.write_text(service_account_json(fcm_key))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "owlmetry.fcm.mock", "--port", "0", "--stats-port", "0",
        "--cert", tls_files[0], "--key", tls_files[1], "--service-account", str(path),
        "--dead-prefix", "dead-", stdout=asyncio.subprocess.PIPE)
    try:
        ready = json.loads(await process.stdout.readline())
        account = dataclasses.replace(base_account, token_uri=ready["token_uri"])
        tokens = AccessTokens(account, ca_file=tls_files[0])
        client = await H2Client.connect(ready["port"], tls_files[0])
        access = await tokens.current()
        assert (await send(client, access, send_body("device-1"))).status == 200
        assert (await send(client, access, send_body("dead-1"))).status == 404
        await client.close()
        await tokens.close()
        url = f"http://127.0.0.1:{ready['stats_port']}/stats"
        stats = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
        assert (stats["requests"], stats["unique_delivered"], stats["token_requests"]) == (2, 1, 1)
        assert stats["outcomes"] == {"OK": 1, "UNREGISTERED": 1} and stats["access_tokens"] == 1
    finally:
        process.terminate()
        assert await process.wait() == 0


async def test_the_admin_sdks_scopes_are_accepted(mock, tls_files, fcm_key):
    scopes = " ".join(["https://www.googleapis.com/auth/cloud-platform",
                       "https://www.googleapis.com/auth/firebase",
                       "https://www.googleapis.com/auth/userinfo.email"])
    status, body = await post_form(mock, tls_files, {
        "grant_type": GRANT_TYPE, "assertion": signed(fcm_key, mock, scope=scopes)})
    assert status == 200 and body["access_token"]


async def test_google_auths_audience_is_accepted_only_when_asked(tls_files, base_account, fcm_key):
    # google-auth (so firebase-admin) addresses every assertion to Google's endpoint.
    from owlmetry.fcm.mock import MockFCM

    for accept, expected in ((False, 400), (True, 200)):
        server = MockFCM(*tls_files, base_account, accept_google_audience=accept)
        await server.start()
        try:
            status, _ = await post_form(server, tls_files, {
                "grant_type": GRANT_TYPE,
                "assertion": signed(fcm_key, server, aud="https://oauth2.googleapis.com/token")})
        finally:
            await server.stop()
        assert status == expected
