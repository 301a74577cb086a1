"""Credentials: user JWTs (HS256), API keys and the signing secret.

Owns how a credential is made and checked: the JWT claims (upstream's `sub`, `email`, `iat`,
optional `exp`, plus `sid`, the session), the API key format and its stored hash, and where
the signing secret comes from: JWT_SECRET, else a key file outside the database, so that a copy
of the database cannot mint sessions. Whether a session has ended is `sessions`'. The HTTP layer
(`http/auth.py`) turns an `InvalidCredential` into a 401; the CLI issues tokens and keys with
the same functions. Must not know about requests, routes or status codes.
"""

import hashlib
import os
import secrets
import time

import jwt

from owlmetry.config import MIN_SECRET_BYTES, Config, ConfigError
from owlmetry.ids import new_ordered_id
from owlmetry.private_files import KEY_REFUSED_BITS, UnfitFile, refuse_unfit, write_private_once
from owlmetry.sessions import Session, Sessions, session_of
from owlmetry.store import ApiKey, Store, sqlite_path

API_KEY_PREFIX = "owl_"
API_KEY_KINDS = ("agent", "server")
VERIFIED_CACHE_SIZE = 10_000
# Beside the SQLite database, unless SECRET_KEY_FILE says otherwise.
KEY_FILE_SUFFIX = ".key"
NO_SECRET_FOR_POSTGRESQL = (
    "with PostgreSQL, set JWT_SECRET (at least 32 bytes, the same on every server process) or "
    "SECRET_KEY_FILE (a file the server makes on first start): the signing secret is not kept "
    "in the database")


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


def key_file_path(config: Config) -> str | None:
    """SECRET_KEY_FILE, else `<database>.key` beside a SQLite database; None for PostgreSQL."""
    if config.secret_key_file:
        return config.secret_key_file
    path = sqlite_path(config.database_url)
    return None if path is None else path + KEY_FILE_SUFFIX


def signing_secret(config: Config) -> str:
    """JWT_SECRET when set; otherwise the key file's secret, made (0600) on first use.
    ConfigError when there is neither, or the key file is unfit."""
    if config.jwt_secret:
        return config.jwt_secret
    path = key_file_path(config)
    if path is None:
        raise ConfigError(NO_SECRET_FOR_POSTGRESQL)
    try:
        write_private_once(path, secrets.token_urlsafe(48).encode() + b"\n")
        refuse_unfit([path], f"the key file {path}", KEY_REFUSED_BITS)
        with open(path, "rb") as f:
            secret = f.read().decode().strip()
    except UnfitFile as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot use the key file {os.path.abspath(path)!r} "
                          f"(SECRET_KEY_FILE): {reason}") from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"the key file {path!r} must hold a secret of at least "
                          f"{MIN_SECRET_BYTES} bytes; remove it to have a new one made")
    return secret


class UserTokens:
    """Issues and verifies user JWTs, remembering tokens already verified.

    Verifying HS256 costs more than the rest of a small request; a token's claims cannot change,
    so a verified token's session is kept (bounded) and only its expiry and whether it has
    ended are checked again.
    """

    def __init__(self, secret: str, sessions: Sessions | None = None):
        self._secret = secret
        self.sessions = sessions if sessions is not None else Sessions()
        self._verified: dict[str, Session] = {}

    def issue(self, user_id: str, email: str, ttl: int | None = None) -> str:
        """A new session's token."""
        now_ms = time.time_ns() // 1_000_000
        now = now_ms // 1000
        claims = {"sub": user_id, "email": email, "iat": now, "sid": new_ordered_id(now_ms)}
        if ttl is not None:
            claims["exp"] = now + ttl
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def user_id(self, token: str) -> str:
        """The `sub` of a valid token of a session not ended; InvalidCredential for anything
        else."""
        return self.session(token).user_id

    def session(self, token: str) -> Session:
        """The session of a valid token, not ended; InvalidCredential for anything else."""
        session = self._verified.get(token)
        if session is None:
            session = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = session
        if session.expires is not None and session.expires <= time.time():
            raise InvalidCredential("Token expired")
        if self.sessions.ended(session):
            raise InvalidCredential("Session ended")
        return session

    def _verify(self, token: str) -> Session:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("Token expired") from None
        except jwt.PyJWTError:
            raise InvalidCredential("Invalid token") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidCredential("Invalid token")
        return session_of(token, claims)
