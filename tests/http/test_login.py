"""Email-code login as a person and their browser see it, on both backends, with the codes read
from mail a real local SMTP server (aiosmtpd) received, and time moved by the app's clock."""

import asyncio
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
from owlmetry.http.context import STORE
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


async def verify(client, address, code):
    return await post(client, "/v1/auth/verify-code", {"email": address, "code": code})


async def log_in(client, mailbox, address):
    assert await send_code(client, address) == (200, SENT)
    return await verify(client, address, mailbox.last_code(address))


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
    (message,) = mailbox.messages
    assert message["From"] == "Owlmetry <login@example.org>"
    assert message["To"] == "bob@example.com"
    assert "code" in message["Subject"].lower()
    assert re.fullmatch(r"\d{6}", mailbox.last_code("bob@example.com"))


async def test_the_email_is_case_insensitive(client, mailbox):
    user = await new_user(client, "Carol@Example.com")
    assert await send_code(client, "CAROL@example.com") == (200, SENT)
    status, reply, _ = await verify(client, "carol@EXAMPLE.com", mailbox.last_code("carol@example.com"))
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


async def test_with_sign_up_disabled_an_unknown_email_gets_no_mail_and_no_login(client, mailbox):
    known = await new_user(client)
    # The same answers for an unknown email as for a known one, up to the limit.
    for _ in range(5):
        assert await send_code(client, "stranger@example.com") == (200, SENT)
        assert await send_code(client, known.email) == (200, SENT)
    for address in ("stranger@example.com", known.email):
        status, reply = await send_code(client, address)
        assert (status, reply["error"]) == (429, "Too many verification codes requested. Try again later.")
    assert mailbox.codes_for("stranger@example.com") == []
    assert len(mailbox.codes_for(known.email)) == 5
    status, reply, _ = await verify(client, "stranger@example.com", "123456")
    assert (status, reply) == (401, INVALID)
    assert await client.app[STORE].user_by_email("stranger@example.com") is None


# ---- Limits and codes -------------------------------------------------------------------------


async def test_a_sixth_code_within_the_hour_is_429_until_the_hour_has_passed(client, mailbox, clock):
    user = await new_user(client)
    for _ in range(5):
        assert await send_code(client, user.email) == (200, SENT)
        clock.advance(MINUTE)
    response = await client.post("/v1/auth/send-code", json={"email": user.email})
    assert response.status == 429
    assert "error" in await response.json()
    # The first code leaves the window an hour after it was sent, 55 minutes from now.
    assert response.headers["Retry-After"] == str(55 * 60)
    clock.advance(55 * MINUTE - 1)
    assert (await send_code(client, user.email))[0] == 429
    clock.advance(1)
    assert await send_code(client, user.email) == (200, SENT)
    assert len(mailbox.messages) == 6
    # And the newest code logs in.
    status, _, _ = await verify(client, user.email, mailbox.last_code(user.email))
    assert status == 200


async def test_concurrent_requests_never_get_a_sixth_code(client, mailbox):
    user = await new_user(client)
    results = await asyncio.gather(*(send_code(client, user.email) for _ in range(12)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [429] * 7
    assert len(mailbox.messages) == 5


async def test_a_code_expires_after_ten_minutes(client, mailbox, clock):
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    clock.advance(10 * MINUTE)
    status, reply, _ = await verify(client, user.email, mailbox.last_code(user.email))
    assert (status, reply) == (401, INVALID)

    assert await send_code(client, user.email) == (200, SENT)
    clock.advance(10 * MINUTE - 1)
    status, _, _ = await verify(client, user.email, mailbox.last_code(user.email))
    assert status == 200


async def test_a_code_works_once(client, mailbox):
    user = await new_user(client)
    status, _, _ = await log_in(client, mailbox, user.email)
    assert status == 200
    status, reply, _ = await verify(client, user.email, mailbox.last_code(user.email))
    assert (status, reply) == (401, INVALID)


async def test_concurrent_uses_of_one_code_log_in_once(client, mailbox):
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    code = mailbox.last_code(user.email)
    results = await asyncio.gather(*(verify(client, user.email, code) for _ in range(8)))
    assert sorted(status for status, _, _ in results) == [200] + [401] * 7


async def test_a_code_is_one_emails_only(client, mailbox):
    alice, bob = await new_user(client), await new_user(client)
    assert await send_code(client, alice.email) == (200, SENT)
    status, reply, _ = await verify(client, bob.email, mailbox.last_code(alice.email))
    assert (status, reply) == (401, INVALID)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_five_wrong_codes_void_the_outstanding_codes(client, mailbox):
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    code = mailbox.last_code(user.email)
    for _ in range(5):
        status, reply, _ = await verify(client, user.email, wrong(code))
        assert (status, reply) == (401, INVALID)
    status, reply, _ = await verify(client, user.email, code)
    assert (status, reply) == (401, INVALID)
    # A new code starts afresh.
    status, _, _ = await log_in(client, mailbox, user.email)
    assert status == 200


async def test_four_wrong_codes_still_let_the_right_one_in(client, mailbox):
    user = await new_user(client)
    assert await send_code(client, user.email) == (200, SENT)
    code = mailbox.last_code(user.email)
    for _ in range(4):
        assert (await verify(client, user.email, wrong(code)))[0] == 401
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
    status, _, _ = await verify(client, user.email, f" {mailbox.last_code(user.email)}\n")
    assert status == 200


# ---- When mail fails --------------------------------------------------------------------------


async def test_an_unreachable_smtp_server_is_503_and_costs_no_slot(make_client):
    # A bound socket that does not listen: connections to it are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        client = await make_client(smtp=SmtpSettings("127.0.0.1", closed.getsockname()[1]))
        user = await new_user(client)
        for _ in range(7):
            status, reply = await send_code(client, user.email)
            assert status == 503
            assert reply == {"error": "Could not send the verification email; try again later"}


async def test_a_refusing_smtp_server_is_503_and_the_slot_stays_free(client, mailbox):
    user = await new_user(client)
    mailbox.refusal = Mailbox.TRY_LATER
    for _ in range(7):
        assert (await send_code(client, user.email))[0] == 503
    mailbox.refusal = None
    for _ in range(5):
        assert await send_code(client, user.email) == (200, SENT)
    assert (await send_code(client, user.email))[0] == 429
    assert (await verify(client, user.email, mailbox.last_code(user.email)))[0] == 200


@pytest.mark.parametrize("username,password", [(SMTP_USER, "wrong-password"), (None, None)])
async def test_smtp_credentials_are_used_and_wrong_ones_are_503(make_client, mailbox,
                                                                 username, password):
    client = await make_client(smtp=SmtpSettings("127.0.0.1", mailbox.port, username, password))
    user = await new_user(client)
    assert (await send_code(client, user.email))[0] == 503
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


async def login_over(make_client, box, smtp):
    client = await make_client(smtp=smtp)
    user = await new_user(client)
    status, _ = await send_code(client, user.email)
    if status == 200:
        assert (await verify(client, user.email, box.last_code(user.email)))[0] == 200
    return status


async def test_smtps_sends_over_tls_from_the_start(make_client, server_tls):
    box = Mailbox()
    server = await start_smtp(box, implicit_tls=server_tls)
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, implicit_tls=True)
        assert await login_over(make_client, box, smtp) == 200
    finally:
        server.close()


@pytest.mark.parametrize("starttls,status", [(None, 200), (True, 200), (False, 503)])
async def test_smtp_upgrades_with_starttls_when_offered(make_client, server_tls, starttls, status):
    # The server insists on STARTTLS: opportunistic and required both upgrade; "never" is
    # turned away, and the client hears 503.
    box = Mailbox()
    server = await start_smtp(box, tls_context=server_tls, require_starttls=True,
                              auth_require_tls=True)
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, starttls=starttls)
        assert await login_over(make_client, box, smtp) == status
    finally:
        server.close()


async def test_required_starttls_on_a_server_without_it_is_503(make_client, mailbox):
    smtp = SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER, SMTP_PASSWORD, starttls=True)
    assert await login_over(make_client, mailbox, smtp) == 503
    assert mailbox.messages == []


async def test_an_untrusted_certificate_is_503(make_client, tls_files):
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    server = await start_smtp(box, implicit_tls=context)  # and SSL_CERT_FILE left alone
    try:
        smtp = SmtpSettings("127.0.0.1", box.port, SMTP_USER, SMTP_PASSWORD, implicit_tls=True)
        assert await login_over(make_client, box, smtp) == 503
        assert box.messages == []
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
    assert (await send_code(client, user.email))[0] == 503
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
    (line,) = [r.getMessage() for r in caplog.records if "login code for" in r.getMessage()]
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
