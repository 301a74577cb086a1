"""Who is calling: user JWTs (cookie `token` or Bearer) and API keys (`owl_agent_…`, `owl_server_…`).

Owns the contract's answers to credentials (401 for missing, malformed or bad credentials, 403
for the wrong kind of caller) and `callers(...)`, the mark a route handler carries to say who
may call it (the app's middleware enforces it). How tokens and keys are made and checked is
`owlmetry.credentials`'. Whether a JWT's user still exists is answered by the store call each
route makes (in the same statement, to save a round trip), and the route turns "no such user"
into `user_gone()`.
"""

from dataclasses import dataclass

from owlmetry.credentials import API_KEY_PREFIX, InvalidCredential, UserTokens, hash_api_key
from owlmetry.http.errors import ApiError
from owlmetry.store import Store


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "user", "agent" or "server"
    user_id: str | None = None
    key_id: str | None = None


def user_id_of(tokens: UserTokens, token: str) -> str:
    try:
        return tokens.user_id(token)
    except InvalidCredential as exc:
        raise ApiError(401, str(exc)) from None


def credential_of(request) -> tuple[str, bool]:
    """The credential `request` carries: its Authorization header's, else its `token` cookie's
    (then True: a cookie holds a user JWT, never an API key)."""
    header = request.headers.get("Authorization")
    if header is None:
        cookie = request.cookies.get("token")
        if not cookie:
            raise ApiError(401, "Authentication required")
        return cookie, True
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise ApiError(401, "Malformed Authorization header: expected 'Bearer <token>'")
    return credential, False


def user_token_of(request) -> str | None:
    """The user JWT `request` carries, read as `identify` reads it; None for none (or a key)."""
    try:
        credential, cookie = credential_of(request)
    except ApiError:
        return None
    return credential if cookie or not credential.startswith(API_KEY_PREFIX) else None


async def identify(request, tokens: UserTokens, store: Store) -> Caller:
    """The caller of `request`, from its Authorization header, else its `token` cookie."""
    credential, cookie = credential_of(request)
    if not cookie and credential.startswith(API_KEY_PREFIX):
        key = await store.api_key_by_hash(hash_api_key(credential))
        if key is None or key.revoked_at is not None:
            raise ApiError(401, "Invalid API key")
        return Caller(key.kind, key_id=key.id)
    return Caller("user", user_id=user_id_of(tokens, credential))


def callers(*kinds: str):
    """Mark a route handler as open to these kinds of caller ("user", "agent", "server") only."""
    def mark(handler):
        handler.allowed_callers = frozenset(kinds)
        return handler
    return mark


def admit(caller: Caller, allowed: frozenset[str]) -> Caller:
    if caller.kind in allowed:
        return caller
    if allowed == {"user"}:
        raise ApiError(403, "This route requires a user session; API keys are not accepted")
    raise ApiError(403, f"This route is not open to {caller.kind} credentials")


def user_gone() -> ApiError:
    return ApiError(401, "User no longer exists")
