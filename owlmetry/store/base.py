"""The store interface: every question the service asks its database, and the rows it gets back.

Both backends (`sqlite.py`, `postgres.py`) implement `Store` with the same behaviour; the HTTP
layer and the CLI see only this module. Nothing here knows SQL, HTTP or JSON.
"""

import abc
import enum
from dataclasses import dataclass


class StoreError(Exception):
    """A failure the caller can explain to a person (bad URL, unreachable database, ...)."""


class EmailTaken(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    kind: str  # "agent" | "server"
    name: str | None
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """What a client sends to register or refresh a device, already validated."""

    channel: str
    token: str
    environment: str
    app_version: str | None
    device_model: str | None
    os_version: str | None


@dataclass(frozen=True, slots=True)
class Device:
    """A registry row as the API shows it: everything but the token."""

    id: str
    channel: str
    environment: str
    app_version: str | None
    device_model: str | None
    os_version: str | None
    last_seen_at: int
    created_at: int


class DeleteOutcome(enum.Enum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"  # no such device, or another user's
    NO_USER = "no_user"  # the caller's user no longer exists


class Store(abc.ABC):
    """One database. Open it with `owlmetry.store.open_store(url)`; close it when done."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema (schema.sql); safe to run any number of times."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the database does not answer."""

    @abc.abstractmethod
    async def setting(self, key: str, default: str) -> str:
        """The stored value of `key`; stores `default` first if there is none (first writer wins)."""

    @abc.abstractmethod
    async def create_user(self, user_id: str, email: str, now: int) -> User:
        """Raise EmailTaken when the email (compared lower-case) exists."""

    @abc.abstractmethod
    async def user_by_email(self, email: str) -> User | None: ...

    @abc.abstractmethod
    async def user_exists(self, user_id: str) -> bool: ...

    @abc.abstractmethod
    async def create_api_key(
        self, key_id: str, kind: str, name: str | None, key_hash: str, now: int
    ) -> ApiKey: ...

    @abc.abstractmethod
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Revoked keys are returned too; the caller decides."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        """False when no unrevoked key has that id."""

    @abc.abstractmethod
    async def register_device(
        self, device_id: str, user_id: str, reg: DeviceRegistration, now: int
    ) -> Device | None:
        """Insert, or take over and refresh the row with that token, in one statement.

        `device_id` is used only if the token is new. None when the user does not exist.
        """

    @abc.abstractmethod
    async def list_devices(self, user_id: str) -> list[Device] | None:
        """The user's devices, newest `last_seen_at` first; None when the user does not exist."""

    @abc.abstractmethod
    async def delete_device(self, user_id: str, device_id: str) -> DeleteOutcome: ...
