"""Email-code login, as the Owlmetry server has it: `POST /v1/auth/send-code`,
`POST /v1/auth/verify-code`, `POST /v1/auth/logout` (which ends the token's session on the
server, `sessions`), and `GET`/`PATCH /v1/auth/me` (user-only:
the user, and the update of their preferences, merged as `owlmetry.preferences` says).

Owns these routes' body rules, the session cookie and the user's JSON shape, and who gets a
code mailed: with sign-up closed (SIGNUP_ENABLED unset) an unknown email is answered exactly as
a known one, but no mail goes out, and its code can never log anyone in. The code's shape and
limits are `login_codes`' rules; sending is `mail`'s. Nothing here logs a code or a token.
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
    MAILER,
    SESSIONS,
    STORE,
    TOKENS,
)
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import parse_json_object, parse_optional_json_object
from owlmetry.ids import new_id
from owlmetry.mail import MailError
from owlmetry.store import User

SESSION_TTL_S = 7 * 24 * 60 * 60  # the JWT's and the cookie's, as upstream
COOKIE = "token"
INVALID_CODE = "Invalid or expired code"


def parse_email(body: dict) -> str:
    email = body.get("email")
    if not isinstance(email, str):
        raise ApiError(400, "email is required and must be a string")
    try:
        return normalize_email(email)
    except ValueError:
        raise ApiError(400, "email must be a valid email address, such as alice@example.com") from None


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


async def send_code(request: web.Request) -> web.Response:
    email = parse_email(parse_json_object(await request.read()))
    app = request.app
    store, now = app[STORE], app[CLOCK]()
    deliver = app[CONFIG].signup_enabled or await store.user_by_email(email) is not None
    # A code is kept for an unknown email too, so that the limit (and its 429) cannot tell
    # known emails from unknown ones; nobody learns that code, and it opens no account.
    code, code_id = login_codes.new_code(), new_id()
    oldest = await store.add_login_code(
        code_id, email, app[CODE_HASHER].hash(email, code), now,
        now + login_codes.CODE_TTL_MS, now - login_codes.WINDOW_MS, login_codes.CODES_PER_WINDOW)
    if oldest is not None:
        wait_s = max(1, -(-(oldest + login_codes.WINDOW_MS - now) // 1000))
        response = json_response(
            {"error": "Too many verification codes requested. Try again later."}, 429)
        response.headers["Retry-After"] = str(wait_s)
        return response
    if deliver:
        try:
            await app[MAILER].send_login_code(email, code)
        except MailError:
            # Not kept: a code that never arrived must not use up one of the hour's five.
            await store.discard_login_code(code_id)
            raise ApiError(503, "Could not send the verification email; try again later") from None
    return json_response({"message": "Verification code sent"})


async def verify_code(request: web.Request) -> web.Response:
    body = parse_json_object(await request.read())
    email, code = parse_email(body), parse_code(body)
    app = request.app
    store, now = app[STORE], app[CLOCK]()
    if not await store.use_login_code(email, app[CODE_HASHER].hash(email, code), now,
                                      login_codes.MAX_ATTEMPTS):
        raise ApiError(401, INVALID_CODE)
    found = await store.login_user(new_id(), email, now, create=app[CONFIG].signup_enabled)
    if found is None:  # sign-up is closed and no such user: its code was never mailed
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
