"""Sessions end on the server: a logout ends its token's session, `owlmetry users
revoke-sessions` every session of a user, on both backends, seen by every server process."""

import asyncio
import time
import uuid

import jwt

from owlmetry.clock import now_ms
from owlmetry.credentials import UserTokens
from owlmetry.http.app import create_app
from owlmetry.http.context import SESSIONS, STORE, TOKENS
from owlmetry.sessions import POLL_S
from tests.test_cli import ok, run, secret_env

ENDED = {"error": "Session ended"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def answer(client, token: str, cookie: bool = False) -> tuple[int, dict]:
    if cookie:
        response = await client.get("/v1/devices", cookies={"token": token})
    else:
        response = await client.get("/v1/devices", headers=bearer(token))
    return response.status, await response.json()


async def logout(client, token: str, cookie: bool = False) -> None:
    kwargs = {"cookies": {"token": token}} if cookie else {"headers": bearer(token)}
    response = await client.post("/v1/auth/logout", **kwargs)
    assert (response.status, await response.json()) == (200, {"success": True})


async def test_a_token_carries_upstreams_claims_and_a_session_id(client, users):
    user_id, token = await users.create("shape@example.com")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "email", "iat", "sid"}
    assert claims["sub"] == user_id and claims["email"] == "shape@example.com"
    with_ttl = client.app[TOKENS].issue(user_id, "shape@example.com", ttl=60)
    assert set(jwt.decode(with_ttl, options={"verify_signature": False})) == {
        "sub", "email", "iat", "exp", "sid"}


async def test_logout_ends_that_session_only(client, users):
    user_id, phone = await users.create()
    laptop = client.app[TOKENS].issue(user_id, "same@example.com")
    _, stranger = await users.create()
    for cookie in (False, True):
        token = client.app[TOKENS].issue(user_id, "same@example.com", ttl=3600)
        assert (await answer(client, token, cookie))[0] == 200
        await logout(client, token, cookie)
        assert await answer(client, token, cookie) == (401, ENDED)
        assert await answer(client, token, not cookie) == (401, ENDED)
    for other in (phone, laptop, stranger):
        assert (await answer(client, other))[0] == 200


async def test_logout_without_a_live_session_is_still_200(client, users):
    user_id, token = await users.create()
    await logout(client, token)
    await logout(client, token)  # already ended
    expired = jwt.encode({"sub": user_id, "exp": int(time.time()) - 5},
                         client.app[TOKENS]._secret, algorithm="HS256")
    await logout(client, expired)
    assert (await client.post("/v1/auth/logout")).status == 200


async def test_a_token_without_a_session_id_is_accepted_and_ends_too(client, users):
    # As upstream Owlmetry mints them, with the JWT_SECRET both servers share.
    user_id, _ = await users.create()
    upstream = jwt.encode({"sub": user_id, "email": "u@example.com", "iat": int(time.time())},
                          client.app[TOKENS]._secret, algorithm="HS256")
    other = jwt.encode({"sub": user_id, "email": "u@example.com", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, client.app[TOKENS]._secret,
                       algorithm="HS256")
    assert (await answer(client, upstream))[0] == 200
    await logout(client, upstream)
    assert await answer(client, upstream) == (401, ENDED)
    assert (await answer(client, other))[0] == 200


async def test_an_ended_session_stays_ended_after_a_restart(config, aiohttp_client):
    first = await aiohttp_client(create_app(config))
    user = await first.app[STORE].create_user(str(uuid.uuid4()), "r@example.com", now_ms())
    token = first.app[TOKENS].issue(user.id, user.email, ttl=3600)
    await logout(first, token)
    await first.close()
    second = await aiohttp_client(create_app(config))
    assert await answer(second, token) == (401, ENDED)


async def test_another_server_refuses_the_session_a_logout_ended(config, aiohttp_client):
    # Two processes of one database (on SQLite, the second stands for the `owlmetry` command).
    one = await aiohttp_client(create_app(config))
    two = await aiohttp_client(create_app(config))
    user = await one.app[STORE].create_user(str(uuid.uuid4()), "two@example.com", now_ms())
    token = one.app[TOKENS].issue(user.id, user.email, ttl=3600)
    assert (await answer(two, token))[0] == 200
    await logout(one, token)
    await two.app[SESSIONS].refresh(two.app[STORE])  # what its watch does every second
    assert await answer(two, token) == (401, ENDED)


async def test_revoke_sessions_ends_every_session_of_the_user_and_no_one_elses(
        client, config, database_url):
    user_id = ok("users", "create", "alice@example.com", "--database", database_url)
    other_id = ok("users", "create", "bob@example.com", "--database", database_url)
    cli_token = ok("users", "token", "alice@example.com", "--database", database_url,
                   env=secret_env(config))
    tokens = client.app[TOKENS]
    alice = [cli_token, tokens.issue(user_id, "alice@example.com", ttl=3600),
             jwt.encode({"sub": user_id, "iat": int(time.time())}, tokens._secret, "HS256")]
    bob = tokens.issue(other_id, "bob@example.com")
    for token in (*alice, bob):
        assert (await answer(client, token))[0] == 200

    assert ok("users", "revoke-sessions", "Alice@example.com", "--database", database_url,
              env=secret_env(config)) == user_id
    # The command is another process: the server reads its revocation within POLL_S.
    deadline = time.monotonic() + 10 * POLL_S + 10
    while (await answer(client, alice[0]))[0] != 401:
        assert time.monotonic() < deadline, "the server never read the revocation"
        await asyncio.sleep(POLL_S / 10)
    for token in alice:
        assert await answer(client, token) == (401, ENDED)
        assert await answer(client, token, cookie=True) == (401, ENDED)
    assert (await answer(client, bob))[0] == 200
    # A session that begins afterwards is good.
    assert (await answer(client, tokens.issue(user_id, "alice@example.com")))[0] == 200


def test_revoke_sessions_of_an_unknown_email_is_one_line_and_exit_1(database_url):
    result = run("users", "revoke-sessions", "nobody@example.com", "--database", database_url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "owlmetry: error: no user with email 'nobody@example.com'\n"


async def test_revocation_rows_go_once_their_tokens_expired_and_numbers_never_repeat(store):
    now = now_ms()
    user = await store.create_user(str(uuid.uuid4()), "rows@example.com", now)
    short = await store.end_session(user.id, "short", now + 1000, now)
    kept = await store.end_session(user.id, "kept", None, now)
    # Recorded later, after `short`'s token expired: its row goes, the numbers go on.
    later = await store.end_session(user.id, "later", now + 10_000, now + 2000)
    assert [r.session_key for r in await store.revocations_after(0)] == ["kept", "later"]
    assert short.seq < kept.seq < later.seq
    everything = await store.end_all_sessions(user.id, now + 3000)
    # The user's earlier rows say nothing the all-sessions row does not.
    assert await store.revocations_after(0) == [everything]
    assert everything.seq > later.seq and everything.session_key is None
    assert await store.revocations_after(everything.seq) == []


async def test_tokens_of_another_secret_are_not_sessions_here(client, users):
    user_id, _ = await users.create()
    foreign = UserTokens("another-secret-of-at-least-32-bytes!").issue(user_id, "f@example.com")
    assert await answer(client, foreign) == (401, {"error": "Invalid token"})
