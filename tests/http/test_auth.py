"""Section 2 of the contract: who may call the user-only routes, and the 401/403 answers."""

import time
import uuid

import jwt
import pytest

from owlmetry import credentials
from owlmetry.clock import now_ms
from owlmetry.credentials import create_api_key, hash_api_key, new_api_key
from owlmetry.http import auth
from owlmetry.http.context import STORE, TOKENS

DEVICE = {"channel": "ios_push", "token": "ab" * 32}
ROUTES = [
    ("POST", "/v1/devices"),
    ("GET", "/v1/devices"),
    ("DELETE", "/v1/devices/00000000-0000-4000-8000-000000000000"),
]


async def call(client, method, path, headers=None, cookies=None):
    response = await client.request(
        method, path, headers=headers or {}, cookies=cookies,
        json=DEVICE if method == "POST" else None,
    )
    return response.status, await response.json()


async def make_key(app, kind, revoked=False):
    store = app[STORE]
    key, secret = await create_api_key(store, str(uuid.uuid4()), kind, None, now_ms())
    if revoked:
        assert await store.revoke_api_key(key.id, now_ms())
    return secret


def secret_of(app):
    return app[TOKENS]._secret


@pytest.mark.parametrize("method,path", ROUTES)
async def test_no_credentials_is_401(client, method, path):
    assert await call(client, method, path) == (401, {"error": "Authentication required"})


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "bearer", "Token abc", "",
])
@pytest.mark.parametrize("method,path", ROUTES)
async def test_malformed_authorization_header_is_401(client, users, method, path, header):
    _, token = await users.create()
    status, reply = await call(client, method, path, {"Authorization": header}, {"token": token})
    assert status == 401
    assert "Authorization" in reply["error"]


def forged_tokens(secret, user_id):
    now = int(time.time())
    claims = {"sub": user_id, "email": "x@example.com", "iat": now}
    return {
        "wrong secret": jwt.encode(claims, "not-the-secret-but-as-long-as-a-real-one", algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS512": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": jwt.encode({**claims, "exp": now - 10}, secret, algorithm="HS256"),
        "no sub": jwt.encode({"email": "x@example.com"}, secret, algorithm="HS256"),
        "numeric sub": jwt.encode({**claims, "sub": 42}, secret, algorithm="HS256"),
        "garbage": "not.a.jwt",
        "unknown user": jwt.encode({**claims, "sub": str(uuid.uuid4())}, secret, algorithm="HS256"),
    }


@pytest.mark.parametrize("kind", [
    "wrong secret", "alg none", "HS512", "expired", "no sub", "numeric sub", "garbage", "unknown user",
])
@pytest.mark.parametrize("method,path", ROUTES)
async def test_bad_or_foreign_jwt_is_401_as_header_and_as_cookie(client, users, method, path, kind):
    user_id, _ = await users.create()
    token = forged_tokens(secret_of(client.app), user_id)[kind]
    as_header = await call(client, method, path, {"Authorization": f"Bearer {token}"})
    as_cookie = await call(client, method, path, cookies={"token": token})
    assert as_header[0] == as_cookie[0] == 401
    assert as_header == as_cookie


async def test_a_token_already_accepted_stops_working_when_it_expires(client, users, monkeypatch):
    user_id, _ = await users.create()
    token = client.app[TOKENS].issue(user_id, "x@example.com", ttl=60)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await call(client, "GET", "/v1/devices", headers))[0] == 200
    an_hour_later = time.time() + 3600
    monkeypatch.setattr(credentials.time, "time", lambda: an_hour_later)
    assert await call(client, "GET", "/v1/devices", headers) == (401, {"error": "Token expired"})


async def test_cookie_and_bearer_both_authenticate(client, users):
    _, token = await users.create()
    assert (await call(client, "POST", "/v1/devices", {"Authorization": f"Bearer {token}"}))[0] == 201
    status, reply = await call(client, "GET", "/v1/devices", cookies={"token": token})
    assert status == 200 and len(reply["devices"]) == 1


@pytest.mark.parametrize("kind", ["agent", "server"])
@pytest.mark.parametrize("method,path", ROUTES)
async def test_a_valid_api_key_on_a_user_route_is_403(client, method, path, kind):
    secret = await make_key(client.app, kind)
    status, reply = await call(client, method, path, {"Authorization": f"Bearer {secret}"})
    assert status == 403
    assert "user" in reply["error"]


@pytest.mark.parametrize("method,path", ROUTES)
async def test_unknown_or_revoked_api_key_is_401(client, method, path):
    revoked = await make_key(client.app, "server", revoked=True)
    for secret in (revoked, new_api_key("server"), "owl_nonsense"):
        assert await call(client, method, path, {"Authorization": f"Bearer {secret}"}) == (
            401, {"error": "Invalid API key"})


async def test_api_keys_are_stored_hashed(client):
    secret = await make_key(client.app, "agent")
    rows = await client.app[STORE].execute("SELECT key_hash FROM api_keys")
    assert [row[0] for row in rows] == [hash_api_key(secret)]
    assert secret not in str(rows)


def test_a_route_for_server_keys_turns_away_users_and_agents():
    server_only = frozenset({"server"})
    assert auth.admit(auth.Caller("server", key_id="k"), server_only).key_id == "k"
    for caller in (auth.Caller("user", user_id="u"), auth.Caller("agent", key_id="a")):
        with pytest.raises(auth.ApiError) as refused:
            auth.admit(caller, server_only)
        assert refused.value.status == 403
        assert caller.kind in refused.value.message


async def test_public_routes_need_no_credentials(client):
    response = await client.get("/healthz", headers={"Authorization": "Bearer garbage"})
    assert response.status == 200
