"""Credentials: user JWTs (HS256), API keys and the signing secret.

Owns how a credential is made and checked: the JWT claims, the API key format and its stored
hash, and where the signing secret comes from. The HTTP layer (`http/auth.py`) turns an
`InvalidCredential` into a 401; the CLI issues tokens and keys with the same functions. Must not
know about requests, routes or status codes.
"""

import hashlib
import secrets
import time

import jwt

from owlmetry.store import ApiKey, Store

API_KEY_PREFIX = "owl_"
API_KEY_KINDS = ("agent", "server")
JWT_SECRET_SETTING = "jwt_secret"
VERIFIED_CACHE_SIZE = 10_000


class InvalidCredential(Exception):
    """A token or key that does not identify anyone; the message says why, for the caller."""


def hash_api_key(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key(kind: str) -> str:
    return f"{API_KEY_PREFIX}{kind}_{secrets.token_urlsafe(32)}"


async def create_api_key(store: Store, key_id: str, kind: str, name: str | None,
                         now: int) -> tuple[ApiKey, str]:
    """A new key of `kind` and its secret, which exists only here: the store keeps its hash."""
    secret = new_api_key(kind)
    return await store.create_api_key(key_id, kind, name, hash_api_key(secret), now), secret


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
        """The `sub` of a valid token; InvalidCredential for anything else."""
        cached = self._verified.get(token)
        if cached is None:
            cached = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = cached
        user_id, expires = cached
        if expires is not None and expires <= time.time():
            raise InvalidCredential("Token expired")
        return user_id

    def _verify(self, token: str) -> tuple[str, float | None]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("Token expired") from None
        except jwt.PyJWTError:
            raise InvalidCredential("Invalid token") from None
        subject, expires = claims["sub"], claims.get("exp")
        if not isinstance(subject, str) or not subject:
            raise InvalidCredential("Invalid token")
        return subject, float(expires) if expires is not None else None
