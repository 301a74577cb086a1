"""Who is calling: user JWTs (cookie `token` or Bearer) and API keys (`owl_agent_…`, `owl_server_…`).

Owns the credential rules of the contract (401 for missing, malformed or bad credentials, 403
for the wrong kind of caller), the HS256 secret, API key hashing, and `callers(...)`, the mark
a route handler carries to say who may call it (the app's middleware enforces it). It checks
signatures and expiry; whether a JWT's user still exists is answered by the store call each
route makes (in the same statement, to save a round trip), and the route turns "no such user"
into `user_gone()`.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from owlmetry.http.errors import ApiError
from owlmetry.store import Store

API_KEY_PREFIX = "owl_"
API_KEY_KINDS = ("agent", "server")
JWT_SECRET_SETTING = "jwt_secret"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "user", "agent" or "server"
    user_id: str | None = None
    key_id: str | None = None


def hash_api_key(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key(kind: str) -> str:
    return f"{API_KEY_PREFIX}{kind}_{secrets.token_urlsafe(32)}"


async def jwt_secret(store: Store, configured: str | None) -> str:
    """JWT_SECRET when set; otherwise one generated on first start and kept in the database."""
    if configured:
        return configured
    return await store.setting(JWT_SECRET_SETTING, secrets.token_urlsafe(48))


class UserTokens:
    """Issues and verifies user JWTs, remembering tokens already verified.

    Verifying HS256 costs more than the rest of a small request; a token's claims cannot change,
    so a verified token is kept (bounded) and only its expiry is checked again.
    """

    def __init__(self, secret: str):
        self._secret = secret
        self._verified: dict[str, tuple[str, float | None]] = {}

    def issue(self, user_id: str, email: str, ttl: int | None = None) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "email": email, "iat": now}
        if ttl is not None:
            claims["exp"] = now + ttl
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def user_id(self, token: str) -> str:
        """The `sub` of a valid token; ApiError(401) for anything else."""
        cached = self._verified.get(token)
        if cached is None:
            cached = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = cached
        user_id, expires = cached
        if expires is not None and expires <= time.time():
            raise ApiError(401, "Token expired")
        return user_id

    def _verify(self, token: str) -> tuple[str, float | None]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "Token expired") from None
        except jwt.PyJWTError:
            raise ApiError(401, "Invalid token") from None
        subject, expires = claims["sub"], claims.get("exp")
        if not isinstance(subject, str) or not subject:
            raise ApiError(401, "Invalid token")
        return subject, float(expires) if expires is not None else None


async def identify(request, tokens: UserTokens, store: Store) -> Caller:
    """The caller of `request`, from its Authorization header, else its `token` cookie."""
    header = request.headers.get("Authorization")
    if header is None:
        cookie = request.cookies.get("token")
        if not cookie:
            raise ApiError(401, "Authentication required")
        return Caller("user", user_id=tokens.user_id(cookie))
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise ApiError(401, "Malformed Authorization header: expected 'Bearer <token>'")
    if credential.startswith(API_KEY_PREFIX):
        key = await store.api_key_by_hash(hash_api_key(credential))
        if key is None or key.revoked_at is not None:
            raise ApiError(401, "Invalid API key")
        return Caller(key.kind, key_id=key.id)
    return Caller("user", user_id=tokens.user_id(credential))


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
