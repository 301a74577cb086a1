"""Email-code login as a person, their browser and an attacker see it, on both backends, with the
codes read from mail a real local SMTP server (aiosmtpd) received (mailed in the background by
the server's queue), and time moved by the app's clock."""

import asyncio
import ipaddress
import json
import logging
import re
import socket
import ssl
import uuid
from dataclasses import replace

import pytest
from aiohttp import web

from owlmetry.clock import now_ms
from owlmetry.config import ConfigError, SmtpSettings, from_env
from owlmetry.credentials import create_api_key
from owlmetry.http.app import create_app
from owlmetry.http.context import LOGIN_MAIL, STORE
from owlmetry.mail import Mailer, MailError
from tests.smtp_server import (  # noqa: F401  (mailbox: a fixture)
    SMTP_PASSWORD,
    SMTP_USER,
    SMTP_WARNING,
    Mailbox,
    mailbox,
    start_smtp,
)

MINUTE = 60 * 1000
HOUR = 60 * MINUTE
WEEK_S = 7 * 24 * 60 * 60
SENT = {"message": "Verification code sent"}
INVALID = {"error": "Invalid or expired code"}
USER_KEYS = {"id", "email", "created_at", "preferences"}

pytestmark = SMTP_WARNING


class Clock:
    """The app's time: it moves only when a test says so."""

    def __init__(self):
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_client(config, aiohttp_client, mailbox, clock):
    """A client of an app mailing through `mailbox` (unless told `smtp=`), with `clock`."""
    async def make(**settings):
        settings.setdefault("smtp", SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER,
                                                 SMTP_PASSWORD))
        return await aiohttp_client(create_app(replace(config, **settings),
                                               clock=clock))
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def new_user(client, address=None):
    address = address or f"{uuid.uuid4().hex[:10]}@example.com"
    return await client.app[STORE].create_user(str(uuid.uuid4()), address, now_ms())


async def post(client, path, payload, **kwargs):
    response = await client.post(path, json=payload, **kwargs)
    return response.status, await response.json(), response


async def send_code(client, address):
    status, reply, _ = await post(client, "/v1/auth/send-code", {"email": address})
    return status, reply


async def verify(client, address, code, **kwargs):
    return await post(client, "/v1/auth/verify-code", {"email": address, "code": code}, **kwargs)


async def log_in(client, mailbox, address):
    before = len(mailbox.codes_for(address))
    assert await send_code(client, address) == (200, SENT)
    codes = await mailbox.wait_for(address, before + 1)
    return await verify(client, address, codes[-1])


async def code_for(client, mailbox, address) -> str:
    """Ask for a code and read it from the mail, once the server has recorded it as sent."""
    before = len(mailbox.codes_for(address))
    assert await send_code(client, address) == (200, SENT)
    code = (await mailbox.wait_for(address, before + 1))[-1]
    await mail_settled(client, address)
    return code


async def mail_settled(client, address, timeout_s: float = 10.0) -> None:
    """Wait until no mail of `address`'s codes is queued or under way (the relay may have the
    mail a moment before the server records that it went)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while any(mail_at is not None for _, mail_at, _ in await code_rows(client, address)):
        assert asyncio.get_running_loop().time() < deadline, f"mail of {address} still queued"
        await asyncio.sleep(0.01)


async def logged(caplog, text: str, timeout_s: float = 10.0) -> str:
    """The first log line holding `text`, once the server wrote it (mail goes in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing logged with {text!r}")


async def code_rows(client, address=None) -> list[tuple]:
    """What the store keeps of an email's codes (every email's without one)."""
    if address is None:
        return await client.app[STORE].execute("SELECT email FROM login_codes")
    return await client.app[STORE].execute(
        "SELECT code_hash, mail_at, mails_sent FROM login_codes WHERE email = $1 "
        "ORDER BY created_at", address)


def cookie_header(response) -> str:
    (header,) = [h for h in response.headers.getall("Set-Cookie") if h.startswith("token=")]
    return header


def attributes(header: str) -> dict[str, str]:
    parts = [part.strip() for part in header.split(";")[1:]]
    return {key.lower(): value for key, _, value in (part.partition("=") for part in parts)}


# ---- Logging in ---------------------------------------------------------------------------


async def test_an_existing_user_logs_in_and_the_cookie_opens_the_devices_api(client, mailbox):
    user = await new_user(client, "alice@example.com")
    status, reply, response = await log_in(client, mailbox, "alice@example.com")
    assert status == 200
    assert reply["is_new_user"] is False
    assert reply["user"] == {"id": user.id, "email": "alice@example.com",
                             "created_at": reply["user"]["created_at"],
                             "preferences": {"notifications": {"types": {}}}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", reply["user"]["created_at"])
    header = cookie_header(response)
    assert header.startswith(f"token={reply['token']};")
    assert attributes(header) == {"httponly": "", "max-age": str(WEEK_S), "path": "/",
                                  "samesite": "Lax"}
    # The browser's cookie jar now carries the session.
    devices = await client.get("/v1/devices")
    assert (devices.status, await devices.json()) == (200, {"devices": []})
    # And the token works as a Bearer token too.
    bearer = await client.get("/v1/auth/me", cookies={"token": ""},
                              headers={"Authorization": f"Bearer {reply['token']}"})
    assert (await bearer.json())["user"]["id"] == user.id


async def test_the_mail_comes_from_email_from_with_the_code(make_client, mailbox):
    client = await make_client(email_from="Owlmetry <login@example.org>")
    await new_user(client, "bob@example.com")
    assert await send_code(client, "  Bob@Example.COM ") == (200, SENT)
    await mailbox.wait_for("bob@example.com")
    (message,) = mailbox.messages
    assert message["From"] == "Owlmetry <login@example.org>"
    assert message["To"] == "bob@example.com"
    assert "code" in message["Subject"].lower()
    assert re.fullmatch(r"\d{6}", mailbox.last_code("bob@example.com"))
    assert message["X-Rcpt-To"] == "bob@example.com"  # the one recipient the relay was given


async def test_the_email_is_case_insensitive(client, mailbox):
    user = await new_user(client, "Carol@Example.com")
    assert await send_code(client, "CAROL@example.com") == (200, SENT)
    (code,) = await mailbox.wait_for("carol@example.com")
    status, reply, _ = await verify(client, "carol@EXAMPLE.com", code)
    assert (status, reply["user"]["id"]) == (200, user.id)


async def test_me_answers_the_session_user(client, mailbox):
    user = await new_user(client)
    await log_in(client, mailbox, user.email)
    response = await client.get("/v1/auth/me")
    assert (response.status, await response.json()) == (200, {"user": {
        "id": user.id, "email": user.email, "created_at": (await response.json())["user"]["created_at"],
        "preferences": {"notifications": {"types": {}}}}})
    assert set((await response.json())["user"]) == USER_KEYS


async def test_me_refuses_api_keys_strangers_and_deleted_users(client, mailbox):
    _, secret = await create_api_key(client.app[STORE], str(uuid.uuid4()), "server", None,
                                     now_ms())
    refused = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status == 403
    assert "error" in await refused.json()
    anonymous = await client.get("/v1/auth/me")
    assert anonymous.status == 401

    user = await new_user(client)
    await log_in(client, mailbox, user.email)
    await client.app[STORE].execute("DELETE FROM users WHERE id = $1", user.id)
    gone = await client.get("/v1/auth/me")
    assert (gone.status, await gone.json()) == (401, {"error": "User no longer exists"})


async def test_logout_clears_the_cookie(client, mailbox):
    user = await new_user(client)
    await log_in(client, mailbox, user.email)
    status, reply, response = await post(client, "/v1/auth/logout", None)
    assert (status, reply) == (200, {"success": True})
    header = cookie_header(response)
    assert header.startswith(('token="";', "token=;"))
    assert attributes(header)["max-age"] == "0"
    assert {"httponly", "path", "samesite"} <= set(attributes(header))
    assert "secure" not in attributes(header)
    after = await client.get("/v1/devices")
    assert after.status == 401


async def test_logout_ends_the_session_on_the_server(client, mailbox):
    user = await new_user(client)
    _, session, _ = await log_in(client, mailbox, user.email)
    replay = {"Authorization": f"Bearer {session['token']}"}
    assert (await client.get("/v1/devices", headers=replay)).status == 200
    await post(client, "/v1/auth/logout", None)  # with the cookie the login set
    ended = await client.get("/v1/devices", headers=replay)
    assert (ended.status, await ended.json()) == (401, {"error": "Session ended"})
    _, again, _ = await log_in(client, mailbox, user.email)  # a new login is a new session
    again_headers = {"Authorization": f"Bearer {again['token']}"}
    assert (await client.get("/v1/devices", headers=again_headers)).status == 200


async def test_logout_needs_no_credentials(client):
    response = await client.post("/v1/auth/logout",
                                 headers={"Authorization": "Bearer not-a-token"})
    assert (response.status, await response.json()) == (200, {"success": True})


async def test_cookies_are_secure_when_cookie_secure_is_set(make_client, mailbox):
    client = await make_client(cookie_secure=True)
    user = await new_user(client)
    _, _, response = await log_in(client, mailbox, user.email)
    assert "secure" in attributes(cookie_header(response))
    _, _, response = await post(client, "/v1/auth/logout", None)
    assert "secure" in attributes(cookie_header(response))


@web.middleware
async def as_if_over_https(request, handler):
    """What the trusted-proxy middleware does for a request an HTTPS proxy forwarded."""
    return await handler(request.clone(scheme="https"))


async def test_cookies_are_secure_on_a_request_that_came_over_https(config, aiohttp_client,
                                                                     mailbox, clock):
    app = create_app(replace(config, smtp=SmtpSettings(
        "127.0.0.1", mailbox.port, SMTP_USER, SMTP_PASSWORD)), clock=clock)
    app.middlewares.append(as_if_over_https)
    client = await aiohttp_client(app)
    user = await new_user(client)
    _, _, response = await log_in(client, mailbox, user.email)
    assert "secure" in attributes(cookie_header(response))


# ---- Sign-up --------------------------------------------------------------------------------


async def test_with_sign_up_enabled_a_first_login_creates_the_user(make_client, mailbox):
    client = await make_client(signup_enabled=True)
    status, reply, response = await log_in(client, mailbox, "New.Person@Example.com")
    assert status == 201
    assert reply["is_new_user"] is True
    assert reply["user"]["email"] == "new.person@example.com"
    assert cookie_header(response).startswith(f"token={reply['token']};")
    stored = await client.app[STORE].user_by_email("new.person@example.com")
    assert stored is not None and stored.id == reply["user"]["id"]
    me = await client.get("/v1/auth/me")
    assert (await me.json())["user"]["id"] == stored.id
    # The second time the same person is an existing user.
    status, again, _ = await log_in(client, mailbox, "new.person@example.com")
    assert (status, again["is_new_user"], again["user"]["id"]) == (200, False, stored.id)


async def test_with_sign_up_enabled_a_new_email_keeps_one_code_row(make_client, mailbox):
    # Anyone may sign up: a new email is a would-be user, so its code is kept (one row, pruned
    # an hour later), and asking again keeps no second one.
    client = await make_client(signup_enabled=True)
    for _ in range(3):
        assert await send_code(client, "newcomer@example.com") == (200, SENT)
    await mailbox.wait_for("newcomer@example.com")
    assert len(await code_rows(client, "newcomer@example.com")) == 1


# ---- The same answer for everyone ------------------------------------------------------------


def answer_bytes(response, body: bytes) -> tuple:
    headers = {k: v for k, v in response.headers.items() if k not in ("Date",)}
    return response.status, headers, body


async def raw_send(client, address, **kwargs):
    response = await client.post("/v1/auth/send-code", json={"email": address}, **kwargs)
    return answer_bytes(response, await response.read())


async def test_known_unknown_and_smtp_down_get_byte_identical_answers(client, mailbox):
    known = await new_user(client)
    waiting = await new_user(client)
    await code_for(client, mailbox, waiting.email)  # a code outstanding
    answers = [await raw_send(client, known.email),
               await raw_send(client, "stranger@example.com"),
               await raw_send(client, waiting.email)]
    mailbox.refusal = Mailbox.TRY_LATER  # the relay is down from here on
    down = await new_user(client)
    answers += [await raw_send(client, down.email),
                await raw_send(client, "other.stranger@example.com")]
    assert answers[0][0] == 200 and answers[0][2] == b'{"message":"Verification code sent"}'
    assert all(answer == answers[0] for answer in answers), answers


async def test_an_unreachable_smtp_server_gets_the_same_answer(make_client, caplog):
    # A bound socket that does not listen: connections to it are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        client = await make_client(smtp=SmtpSettings("127.0.0.1", closed.getsockname()[1]))
        user = await new_user(client)
        answers = [await raw_send(client, user.email),
                   await raw_send(client, "stranger@example.com")]
        assert answers[0] == answers[1] and answers[0][0] == 200
        await logged(caplog, "could not mail a login code")


async def test_a_shutdown_right_after_a_wake_ends(client, mailbox):
    # On Python 3.11 `asyncio.wait_for` returns the result of what it waited for when that is
    # done in the same turn as the cancellation: a worker woken in the turn of its stop took
    # the cancellation for the wake and went on with its loop (a full test run hung so).
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    await mailbox.wait_for(user.email)
    await asyncio.sleep(0.05)  # the worker waits for a wake now
    worker = client.app[LOGIN_MAIL]
    worker.wake()
    await asyncio.wait_for(worker.stop(), 10)


async def test_unknown_emails_get_no_mail_no_row_and_no_login(client, mailbox):
    known = await new_user(client)
    for n in range(3):
        assert await send_code(client, f"stranger{n}@example.com") == (200, SENT)
    await code_for(client, mailbox, known.email)
    assert await code_rows(client) == [(known.email,)]
    assert [m["X-Rcpt-To"] for m in mailbox.messages] == [known.email]
    status, reply, _ = await verify(client, "stranger0@example.com", "123456")
    assert (status, reply) == (401, INVALID)
    assert await client.app[STORE].user_by_email("stranger0@example.com") is None


async def test_mail_the_relay_turned_away_goes_once_it_is_back(client, mailbox, clock, caplog):
    user = await new_user(client)
    mailbox.refusal = Mailbox.TRY_LATER
    assert await send_code(client, user.email) == (200, SENT)
    await logged(caplog, "could not mail a login code")
    assert mailbox.messages == []
    # Once the retry is booked (due within the backoff, not the lease), the relay comes back.
    while (await code_rows(client, user.email))[0][1] >= clock.now + 60_000:
        await asyncio.sleep(0.01)
    mailbox.refusal = None
    clock.advance(10_000)  # past the first retry's backoff (at most 5 s)
    client.app[LOGIN_MAIL].wake()
    (code,) = await mailbox.wait_for(user.email)
    assert (await verify(client, user.email, code))[0] == 200


async def test_queued_mail_survives_a_restart(make_client, mailbox, clock):
    # The relay is down while the first server runs; the second one mails the code.
    first = await make_client()
    user = await new_user(first)
    mailbox.refusal = Mailbox.TRY_LATER
    assert await send_code(first, user.email) == (200, SENT)
    await first.close()
    mailbox.refusal = None
    clock.advance(5 * MINUTE)
    second = await make_client()
    (code,) = await mailbox.wait_for(user.email)
    assert (await verify(second, user.email, code))[0] == 200


# ---- Per client address -----------------------------------------------------------------------


@pytest.fixture
async def proxied(make_client):
    """A client of a server behind a trusted proxy (the test), so each request names its
    client's address in X-Forwarded-For."""
    return await make_client(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))


def from_address(address: str) -> dict:
    return {"headers": {"X-Forwarded-For": address}}


async def test_send_code_is_limited_per_client_address(proxied, clock):
    clock.now -= clock.now % (15 * MINUTE)  # at a window's start: the minute below stays in it
    user = await new_user(proxied)
    for n in range(10):
        address = user.email if n % 2 else f"stranger{n}@example.com"
        assert (await raw_send(proxied, address, **from_address("203.0.113.7")))[0] == 200
    clock.advance(MINUTE)
    for address in (user.email, "stranger@example.com"):
        response = await proxied.post("/v1/auth/send-code", json={"email": address},
                                      **from_address("203.0.113.7"))
        assert response.status == 429
        assert (await response.json())["error"].startswith("Too many verification codes")
        assert response.headers["Retry-After"] == str(14 * 60)
    assert (await raw_send(proxied, user.email, **from_address("203.0.113.8")))[0] == 200
    # An IPv6 host is counted by its /64.
    for n in range(10):
        assert (await raw_send(proxied, user.email, **from_address(f"2001:db8::{n + 1}")))[0] == 200
    assert (await raw_send(proxied, user.email, **from_address("2001:db8::ffff")))[0] == 429
    assert (await raw_send(proxied, user.email, **from_address("2001:db8:0:1::1")))[0] == 200
    # The window passes.
    clock.advance(15 * MINUTE)
    assert (await raw_send(proxied, user.email, **from_address("203.0.113.7")))[0] == 200


async def test_verify_code_is_limited_per_client_address(proxied):
    for n in range(30):
        status, _, _ = await verify(proxied, f"guess{n}@example.com", "123456",
                                    **from_address("198.51.100.1"))
        assert status == 401
    status, reply, response = await verify(proxied, "guess@example.com", "123456",
                                           **from_address("198.51.100.1"))
    assert status == 429 and reply["error"].startswith("Too many login attempts")
    assert int(response.headers["Retry-After"]) > 0
    assert (await verify(proxied, "guess@example.com", "123456",
                         **from_address("198.51.100.2")))[0] == 401


async def test_the_limits_are_configurable(make_client):
    client = await make_client(login_sends_per_address=1, login_verifies_per_address=1)
    assert (await send_code(client, "a@example.com"))[0] == 200
    assert (await send_code(client, "a@example.com"))[0] == 429
    assert (await verify(client, "a@example.com", "123456"))[0] == 401
    assert (await verify(client, "a@example.com", "123456"))[0] == 429


# ---- The outstanding code ---------------------------------------------------------------------


async def test_strangers_asking_for_a_users_code_do_not_lock_them_out(proxied, mailbox, clock):
    user = await new_user(proxied)
    code = await code_for(proxied, mailbox, user.email)
    # Five (or fifty) requests from anyone: the same answer, no new code, no new mail yet.
    for n in range(5):
        assert (await raw_send(proxied, user.email, **from_address(f"192.0.2.{n}")))[0] == 200
    ((_, mail_at, mails_sent),) = await code_rows(proxied, user.email)
    assert (mail_at, mails_sent) == (None, 1)
    # A minute on, asking again mails the same code again (the first mail may be lost); any
    # mail the person opens works.
    clock.advance(MINUTE)
    assert await send_code(proxied, user.email) == (200, SENT)
    assert await mailbox.wait_for(user.email, 2) == [code, code]
    status, _, _ = await verify(proxied, user.email, code)
    assert status == 200


async def test_a_code_is_mailed_at_most_three_times(client, mailbox, clock):
    user = await new_user(client)
    code = await code_for(client, mailbox, user.email)
    for sent in (2, 3):
        clock.advance(MINUTE)
        assert await send_code(client, user.email) == (200, SENT)
        assert await mailbox.wait_for(user.email, sent) == [code] * sent
        await mail_settled(client, user.email)
    clock.advance(MINUTE)
    assert await send_code(client, user.email) == (200, SENT)
    # Nothing is due: the code row says so.
    ((_, mail_at, mails_sent),) = await code_rows(client, user.email)
    assert (mail_at, mails_sent) == (None, 3)
    # Once it expires, a new code comes.
    clock.advance(10 * MINUTE)
    new = await code_for(client, mailbox, user.email)
    assert len(await code_rows(client, user.email)) == 2
    assert (await verify(client, user.email, new))[0] == 200


async def test_a_code_expires_after_ten_minutes(client, mailbox, clock):
    user = await new_user(client)
    code = await code_for(client, mailbox, user.email)
    clock.advance(10 * MINUTE)
    status, reply, _ = await verify(client, user.email, code)
    assert (status, reply) == (401, INVALID)

    code = await code_for(client, mailbox, user.email)
    clock.advance(10 * MINUTE - 1)
    status, _, _ = await verify(client, user.email, code)
    assert status == 200


async def test_a_code_works_once(client, mailbox):
    user = await new_user(client)
    status, _, _ = await log_in(client, mailbox, user.email)
    assert status == 200
    status, reply, _ = await verify(client, user.email, mailbox.last_code(user.email))
    assert (status, reply) == (401, INVALID)


async def test_concurrent_uses_of_one_code_log_in_once(client, mailbox):
    user = await new_user(client)
    code = await code_for(client, mailbox, user.email)
    results = await asyncio.gather(*(verify(client, user.email, code) for _ in range(8)))
    statuses = [status for status, _, _ in results]
    # The others are wrong codes now: refused, and past the fifth they wait (429).
    assert statuses.count(200) == 1 and set(statuses) <= {200, 401, 429}


async def test_a_code_is_one_emails_only(client, mailbox):
    alice, bob = await new_user(client), await new_user(client)
    code = await code_for(client, mailbox, alice.email)
    status, reply, _ = await verify(client, bob.email, code)
    assert (status, reply) == (401, INVALID)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# ---- Wrong codes ------------------------------------------------------------------------------


async def test_wrong_codes_bring_a_wait_not_a_void_code(client, mailbox, clock):
    user = await new_user(client)
    code = await code_for(client, mailbox, user.email)
    for _ in range(5):
        status, reply, _ = await verify(client, user.email, wrong(code))
        assert (status, reply) == (401, INVALID)
    # The sixth attempt waits a second first, even with the right code.
    status, reply, response = await verify(client, user.email, code)
    assert (status, response.headers["Retry-After"]) == (429, "1")
    assert reply == {"error": "Too many wrong codes for this email. Try again later."}
    clock.advance(1000)
    assert (await verify(client, user.email, code))[0] == 200
    # The right code reset the count: a new code's first wrong tries cost nothing.
    new = await code_for(client, mailbox, user.email)
    assert (await verify(client, user.email, wrong(new)))[0] == 401
    assert (await verify(client, user.email, new))[0] == 200


async def test_wrong_codes_answer_the_same_for_unknown_emails(client, mailbox):
    user = await new_user(client)
    await code_for(client, mailbox, user.email)
    answers = {}
    for address in (user.email, "stranger@example.com"):
        seen = []
        for _ in range(7):
            status, reply, response = await verify(client, address, "000000")
            seen.append((status, reply, response.headers.get("Retry-After")))
        answers[address] = seen
    assert answers[user.email] == answers["stranger@example.com"]
    assert [status for status, _, _ in answers[user.email]] == [401] * 5 + [429] * 2


async def test_the_hundredth_wrong_code_locks_the_email_until_the_operator_unlocks_it(
        make_client, mailbox, clock):
    client = await make_client(login_verifies_per_address=100_000)
    user = await new_user(client)
    code = await code_for(client, mailbox, user.email)
    waits = []
    for _ in range(100):
        status, _, response = await verify(client, user.email, wrong(code))
        if status == 429:
            waits.append(int(response.headers["Retry-After"]))
            clock.advance(waits[-1] * 1000)
            status, _, _ = await verify(client, user.email, wrong(code))
        assert status == 401
    # The waits grow from a second to an hour: 100 guesses take days.
    assert waits[:4] == [1, 2, 4, 8] and waits[-1] == 3600 and len(waits) == 95
    assert sum(waits) > 3 * 24 * 3600
    clock.advance(24 * HOUR)
    code = await code_for(client, mailbox, user.email)
    status, reply, response = await verify(client, user.email, code)
    assert (status, "Retry-After" in response.headers) == (429, False)
    assert "locked" in reply["error"]
    assert await client.app[STORE].unlock_login(user.email)  # `owlmetry users unlock EMAIL`
    assert (await verify(client, user.email, code))[0] == 200


# ---- Bad requests -----------------------------------------------------------------------------


def with_code(raw: bytes) -> bytes:
    """The same body with a well-formed code, where it is an object."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    return json.dumps({**body, "code": "123456"}).encode() if isinstance(body, dict) else raw


# Refused before the database is asked, so one app (per backend) checks them all.
BAD_EMAIL_BODIES = [
    (b"not json", "valid JSON"),
    (b"[]", "JSON object"),
    (b"{}", "email is required"),
    (b'{"email": 42}', "email is required and must be a string"),
    (b'{"email": null}', "email is required"),
    (b'{"email": ""}', "valid email address"),
    (b'{"email": "no-at-sign"}', "valid email address"),
    (b'{"email": "two@@example.com"}', "valid email address"),
    (b'{"email": "spa ce@example.com"}', "valid email address"),
    (b'{"email": "a@b.c\\r\\nBcc: x@y.z"}', "valid email address"),
    (b'{"email": "' + b"a" * 250 + b'@example.com"}', "valid email address"),
    (b'{"email": "a\\u0000@example.com"}', "NUL"),
]
BAD_CODES = [
    (None, "code is required"),
    (123456, "code is required and must be a string"),
    (["123456"], "code is required"),
    ("12345", "6 digits"),
    ("1234567", "6 digits"),
    ("abcdef", "6 digits"),
    ("\u0661\u0662\u0663\u0664\u0665\u0666", "6 digits"),  # digits, but not ASCII ones
]


HOSTILE_EMAILS = [
    "x,victim@example.com",            # a list: both would be mailed
    "victim@example.com,",             # a trailing comma
    "victim@example.com(1)",           # a comment
    "a<victim@example.com>",           # a name and an address
    "Victim <victim@example.com>",
    "victim@example.com victim2@example.com",
    "victim@example.com;other@example.com",
    '"victim@example.com"@example.org',  # a quoted local part: refused on purpose
    '"a b"@example.com',
    "victim@[192.0.2.1]",              # a domain literal: refused on purpose
    "victim@192.0.2.1",
    "victim@localhost",                # a domain of one label
    "victim@example..com",
    "victim.@example.com",
    "vi..ctim@example.com",
    "victim@-example.com",
    "victim@example.com.",
    "vïctim@example.com",              # non-ASCII: needs SMTPUTF8
    "victim@example.com\r\nBcc: x@example.org",
    "a" * 65 + "@example.com",         # a local part over 64
]


@pytest.mark.parametrize("path", ["/v1/auth/send-code", "/v1/auth/verify-code"])
async def test_hostile_addresses_are_400_naming_email(make_client, mailbox, path):
    client = await make_client(signup_enabled=True)  # where they would have become accounts
    for address in HOSTILE_EMAILS:
        payload = {"email": address, "code": "123456"}
        status, reply, _ = await post(client, path, payload)
        assert status == 400, address
        assert reply["error"].startswith("email must be a valid email address"), address
    await code_for(client, mailbox, "real@example.com")
    assert [m["X-Rcpt-To"] for m in mailbox.messages] == ["real@example.com"]
    assert await code_rows(client) == [("real@example.com",)]


@pytest.mark.parametrize("address", ["x,victim@example.com", "a<victim@example.com>",
                                     "victim@example.com(1)", "victim@example.com,"])
async def test_the_mailer_itself_sends_only_to_one_address(mailbox, address):
    mailer = Mailer(SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER, SMTP_PASSWORD),
                    "Owlmetry <noreply@example.com>")
    with pytest.raises(MailError) as refused:
        await mailer.send_login_code(address, "123456")
    assert not refused.value.transient
    with pytest.raises(MailError):
        await mailer.send_notification(address, "Title", "Body", None)
    assert mailbox.messages == []
    await mailer.send_notification("ok@example.com", "Title", "Body", None)
    assert [m["X-Rcpt-To"] for m in mailbox.messages] == ["ok@example.com"]


async def test_bad_emails_are_400(client, mailbox):
    for path in ("/v1/auth/send-code", "/v1/auth/verify-code"):
        for raw, message in BAD_EMAIL_BODIES:
            body = raw if path.endswith("send-code") else with_code(raw)
            response = await client.post(path, data=body,
                                         headers={"Content-Type": "application/json"})
            reply = await response.json()
            assert (response.status, message in reply["error"]) == (400, True), (path, raw, reply)
    assert mailbox.messages == []


async def test_bad_codes_are_400(client):
    for code, message in BAD_CODES:
        payload = {"email": "alice@example.com"} if code is None else \
            {"email": "alice@example.com", "code": code}
        status, reply, _ = await post(client, "/v1/auth/verify-code", payload)
        assert (status, message in reply["error"]) == (400, True), (code, reply)


async def test_a_code_with_spaces_around_it_is_accepted(client, mailbox):
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    status, _, _ = await verify(client, user.email, f" {(await mailbox.wait_for(user.email))[-1]}\n")
    assert status == 200


# ---- When mail fails --------------------------------------------------------------------------


async def test_a_relay_refusing_for_good_is_logged_and_a_later_ask_tries_again(
        client, mailbox, clock, caplog):
    user = await new_user(client)
    mailbox.refusal = Mailbox.REJECTED
    assert await send_code(client, user.email) == (200, SENT)
    await logged(caplog, "refused it for good")
    await mail_settled(client, user.email)
    mailbox.refusal = None
    clock.advance(MINUTE)
    code = await code_for(client, mailbox, user.email)
    assert (await verify(client, user.email, code))[0] == 200


@pytest.mark.parametrize("username,password", [(SMTP_USER, "wrong-password"), (None, None)])
async def test_smtp_credentials_are_used_and_wrong_ones_fail_the_mail(make_client, mailbox, caplog,
                                                                     username, password):
    client = await make_client(smtp=SmtpSettings("127.0.0.1", mailbox.port, username, password))
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    # aiosmtpd never answers a wrong password: the send times out (SMTP_TIMEOUT_S, 15 s).
    await logged(caplog, "could not mail a login code", timeout_s=30)
    assert mailbox.messages == []


# ---- TLS ----------------------------------------------------------------------------------


@pytest.fixture
def server_tls(tls_files, monkeypatch):
    """The server side's TLS context; the client trusts its certificate (as a system CA)."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    return context


async def login_over(make_client, box, smtp, caplog):
    """Whether a login went through with mail over `smtp` (else the mail failed, and said so)."""
    client = await make_client(smtp=smtp)
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    try:
        (code,) = await box.wait_for(user.email, timeout_s=3)
    except AssertionError:
        await logged(caplog, "could not mail a login code")
        assert box.messages == []
        return False
    assert (await verify(client, user.email, code))[0] == 200
    return True


async def test_smtps_sends_over_tls_from_the_start(make_client, server_tls, caplog):
    box = Mailbox()
    server = await start_smtp(box, implicit_tls=server_tls)
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, implicit_tls=True)
        assert await login_over(make_client, box, smtp, caplog)
    finally:
        server.close()


@pytest.mark.parametrize("starttls,mailed", [(None, True), (True, True), (False, False)])
async def test_smtp_upgrades_with_starttls_when_offered(make_client, server_tls, caplog,
                                                        starttls, mailed):
    # The server insists on STARTTLS: opportunistic and required both upgrade; "never" is
    # turned away, and the mail fails.
    box = Mailbox()
    server = await start_smtp(box, tls_context=server_tls, require_starttls=True,
                              auth_require_tls=True)
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, starttls=starttls)
        assert await login_over(make_client, box, smtp, caplog) is mailed
    finally:
        server.close()


async def test_required_starttls_on_a_server_without_it_fails_the_mail(make_client, mailbox,
                                                                        caplog):
    smtp = SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER, SMTP_PASSWORD, starttls=True)
    assert not await login_over(make_client, mailbox, smtp, caplog)


async def test_an_untrusted_certificate_fails_the_mail(make_client, tls_files, caplog):
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    server = await start_smtp(box, implicit_tls=context)  # and SSL_CERT_FILE left alone
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, implicit_tls=True)
        assert not await login_over(make_client, box, smtp, caplog)
    finally:
        server.close()


# ---- Logs ---------------------------------------------------------------------------------


async def test_with_smtp_no_code_token_or_password_is_logged(client, mailbox, caplog):
    # What `owlmetry serve` logs (INFO), and all the service's own debug lines. (Libraries'
    # debug output, such as aiosqlite's statement parameters, is not on in a server.)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="owlmetry")
    user = await new_user(client, "private.person@example.com")
    status, reply, _ = await log_in(client, mailbox, user.email)
    assert status == 200
    mailbox.refusal = Mailbox.TRY_LATER
    assert (await send_code(client, user.email))[0] == 200
    await logged(caplog, "could not mail a login code")
    codes = mailbox.codes_for(user.email)
    # Everything the service logged (the test SMTP server's own log, "mail.log", is not ours).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))
    assert "p***@example.com" in text  # it did log, with the address masked
    for secret in [*codes, reply["token"], SMTP_PASSWORD, "private.person"]:
        assert secret not in text


async def test_without_smtp_the_code_goes_to_the_log(make_client, caplog):
    caplog.set_level(logging.INFO, logger="owlmetry.mail")
    client = await make_client(smtp=None)
    warnings = [r for r in caplog.records
                if r.name == "owlmetry.mail" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "SMTP_URL" in warnings[0].getMessage()
    user = await new_user(client, "dev@example.com")
    assert await send_code(client, user.email) == (200, SENT)
    line = await logged(caplog, "login code for")
    assert "d***@example.com" in line
    code = re.search(r"\b(\d{6})$", line).group(1)
    status, reply, _ = await verify(client, user.email, code)
    assert (status, reply["user"]["id"]) == (200, user.id)


# ---- Configuration ------------------------------------------------------------------------


def test_smtp_url_is_read_with_its_options():
    config = from_env({"SMTP_URL": "smtps://mailer:p%40ss@mail.example.com",
                       "EMAIL_FROM": "Owlmetry <login@example.com>", "SIGNUP_ENABLED": "true"})
    assert config.smtp == SmtpSettings("mail.example.com", 465, "mailer", "p@ss",
                                       implicit_tls=True)
    assert (config.email_from, config.signup_enabled) == ("Owlmetry <login@example.com>", True)
    plain = from_env({"SMTP_URL": "smtp://relay:2525?starttls=true"}).smtp
    assert (plain.port, plain.starttls, plain.implicit_tls) == (2525, True, False)
    assert from_env({"SMTP_URL": "smtp://relay"}).smtp.starttls is None  # when offered
    defaults = from_env({})
    assert (defaults.smtp, defaults.signup_enabled) == (None, False)


@pytest.mark.parametrize("url", [
    "smtp://user:hunter2-secret@relay:notaport",
    "smtp://user:hunter2-secret@relay/path",
    "ftp://user:hunter2-secret@relay",
    "smtps://user:hunter2-secret@relay?starttls=true",
])
def test_a_bad_smtp_url_is_named_without_its_password(url):
    with pytest.raises(ConfigError) as error:
        from_env({"SMTP_URL": url})
    assert "SMTP_URL" in str(error.value)
    assert "hunter2" not in str(error.value)
    assert "hunter2" not in repr(from_env({"SMTP_URL": "smtp://u:hunter2@relay"}))


def test_the_per_address_limits_are_read_from_the_environment():
    config = from_env({"LOGIN_SENDS_PER_ADDRESS": "50", "LOGIN_VERIFIES_PER_ADDRESS": "200"})
    assert (config.login_sends_per_address, config.login_verifies_per_address) == (50, 200)
    defaults = from_env({})
    assert (defaults.login_sends_per_address, defaults.login_verifies_per_address) == (10, 30)
    for name in ("LOGIN_SENDS_PER_ADDRESS", "LOGIN_VERIFIES_PER_ADDRESS"):
        with pytest.raises(ConfigError) as error:
            from_env({name: "0"})
        assert name in str(error.value)
