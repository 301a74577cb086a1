"""Email-code login, as the Owlmetry server has it: `POST /v1/auth/send-code`,
`POST /v1/auth/verify-code`, `POST /v1/auth/logout` (which ends the token's session on the
server, `sessions`), and `GET`/`PATCH /v1/auth/me` (user-only:
the user, and the update of their preferences, merged as `owlmetry.preferences` says).

Owns these routes' body rules, answers, the session cookie and the user's JSON shape.
`send-code` answers the same bytes for every well-formed email within the client address's
limit, whether it has an account, has a code outstanding, or the relay is down: it does the
same work (a code drawn, hashed and sealed; one store transaction; the mail worker woken) and
leaves the mail to the queue (`login_mail`). With sign-up closed (SIGNUP_ENABLED unset) an
unknown email gets no code, no mail and no row. The rules and numbers are `login_codes`';
sending is `mail`'s. Nothing here logs a code or a token.
"""

from aiohttp import web

from owlmetry import login_codes, preferences
from owlmetry.clock import iso_ms
from owlmetry.credentials import InvalidCredential
from owlmetry.emails import normalize_email
from owlmetry.http.auth import callers, user_gone, user_token_of
from owlmetry.http.context import (
    CALLER,
    CLOCK,
    CODE_HASHER,
    CONFIG,
    LOGIN_MAIL,
    SESSIONS,
    STORE,
    TOKENS,
)
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import parse_json_object, parse_optional_json_object
from owlmetry.ids import new_id
from owlmetry.store import User
from owlmetry.store.login_codes import Attempt

SESSION_TTL_S = 7 * 24 * 60 * 60  # the JWT's and the cookie's, as upstream
COOKIE = "token"
INVALID_CODE = "Invalid or expired code"
SENT = {"message": "Verification code sent"}


def parse_email(body: dict) -> str:
    email = body.get("email")
    if not isinstance(email, str):
        raise ApiError(400, "email is required and must be a string")
    try:
        return normalize_email(email)
    except ValueError:
        raise ApiError(400, "email must be a valid email address, exactly one, such as "
                            "alice@example.com (no name, comment, list or quoted part)") from None


def parse_code(body: dict) -> str:
    code = body.get("code")
    if not isinstance(code, str):
        raise ApiError(400, "code is required and must be a string (the 6 digits from the email)")
    code = code.strip()
    if not login_codes.is_code(code):
        raise ApiError(400, "code must be the 6 digits from the email")
    return code


def user_json(user: User) -> dict:
    return {"id": user.id, "email": user.email, "created_at": iso_ms(user.created_at),
            "preferences": preferences.shown(user.preferences)}


def parse_preferences_patch(body: dict) -> dict:
    if "preferences" not in body:
        raise ApiError(400, "At least one field to update is required: preferences")
    try:
        return preferences.parse_patch(body["preferences"])
    except preferences.PreferenceError as exc:
        raise ApiError(400, str(exc)) from None


def cookie_attributes(request: web.Request) -> dict:
    # Secure when the operator says so, or when this request came over HTTPS (directly, or as
    # a trusted proxy says): then the browser will only send it back over HTTPS.
    secure = request.app[CONFIG].cookie_secure or request.secure
    return {"path": "/", "httponly": True, "samesite": "Lax", "secure": secure or None}


def too_many(message: str, wait_ms: int | None) -> web.Response:
    response = json_response({"error": message}, 429)
    if wait_ms is not None:
        response.headers["Retry-After"] = str(max(1, -(-wait_ms // 1000)))
    return response


async def send_code(request: web.Request) -> web.Response:
    email = parse_email(parse_json_object(await request.read()))
    app = request.app
    store, now, hasher, config = app[STORE], app[CLOCK](), app[CODE_HASHER], app[CONFIG]
    # Drawn, hashed and sealed whatever becomes of it: the same work for every email.
    code, code_id = login_codes.new_code(), new_id()
    wait = await store.ask_login_code(
        email, login_codes.address_bucket("send", request.remote), code_id,
        hasher.hash(email, code), hasher.seal(code_id, email, code), now,
        now + login_codes.CODE_TTL_MS, signup=config.signup_enabled,
        window_ms=login_codes.ADDRESS_WINDOW_MS, limit=config.login_sends_per_address,
        resend_before=now - login_codes.RESEND_AFTER_MS, max_mails=login_codes.MAX_MAILS)
    if wait:
        return too_many("Too many verification codes requested from this address. "
                        "Try again later.", wait)
    app[LOGIN_MAIL].wake()
    return json_response(SENT)


async def verify_code(request: web.Request) -> web.Response:
    body = parse_json_object(await request.read())
    email, code = parse_email(body), parse_code(body)
    app = request.app
    store, now, config = app[STORE], app[CLOCK](), app[CONFIG]
    result = await store.try_login_code(
        email, login_codes.address_bucket("verify", request.remote),
        app[CODE_HASHER].hash(email, code), now, window_ms=login_codes.ADDRESS_WINDOW_MS,
        limit=config.login_verifies_per_address, delay_after=login_codes.delay_after)
    if result.outcome is Attempt.LIMITED:
        return too_many("Too many login attempts from this address. Try again later.",
                        result.wait_ms)
    if result.outcome is Attempt.WAITING:
        return too_many("Too many wrong codes for this email. Try again later.",
                        result.wait_ms)
    if result.outcome is Attempt.LOCKED:
        return too_many("Too many wrong codes for this email: it is locked until the "
                        "server's operator unlocks it.", None)
    if result.outcome is not Attempt.ACCEPTED:
        raise ApiError(401, INVALID_CODE)
    found = await store.login_user(new_id(), email, now, create=config.signup_enabled)
    if found is None:  # sign-up was closed after the code was made
        raise ApiError(401, INVALID_CODE)
    user, is_new = found
    token = app[TOKENS].issue(user.id, user.email, ttl=SESSION_TTL_S)
    response = json_response(
        {"token": token, "user": user_json(user), "is_new_user": is_new}, 201 if is_new else 200)
    response.set_cookie(COOKIE, token, max_age=SESSION_TTL_S, **cookie_attributes(request))
    return response


async def logout(request: web.Request) -> web.Response:
    # Ends the session of the token sent, if it is a live one; without one there is nothing to
    # end, and the answer is the same (the cookie is cleared either way).
    token = user_token_of(request)
    if token is not None:
        try:
            session = request.app[TOKENS].session(token)
        except InvalidCredential:
            session = None
        if session is not None:
            await request.app[SESSIONS].end(request.app[STORE], session, request.app[CLOCK]())
    response = json_response({"success": True})
    response.del_cookie(COOKIE, **cookie_attributes(request))
    return response


@callers("user")
async def me(request: web.Request) -> web.Response:
    user = await request.app[STORE].user_by_id(request[CALLER].user_id)
    if user is None:
        raise user_gone()
    return json_response({"user": user_json(user)})


@callers("user")
async def update_me(request: web.Request) -> web.Response:
    patch = parse_preferences_patch(parse_optional_json_object(await request.read()))
    try:
        user = await request.app[STORE].update_preferences(
            request[CALLER].user_id, lambda stored: preferences.merge(stored, patch))
    except preferences.PreferenceError as exc:  # the merged whole is over a bound
        raise ApiError(400, str(exc)) from None
    if user is None:
        raise user_gone()
    return json_response({"user": user_json(user)})


routes = [
    web.post("/v1/auth/send-code", send_code),
    web.post("/v1/auth/verify-code", verify_code),
    web.post("/v1/auth/logout", logout),
    web.get("/v1/auth/me", me, allow_head=False),
    web.patch("/v1/auth/me", update_me),
]
