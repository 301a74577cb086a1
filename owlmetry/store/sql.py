"""What both SQL backends do the same way: the `Store` methods, in terms of two primitives.

A backend supplies `_write` and `_read` (run one statement from `queries`, return its rows)
and `_is_unique_violation`; this class turns rows into the interface's dataclasses. It must not
hold connection logic or dialect-specific SQL.
"""

import abc

from owlmetry.store import queries
from owlmetry.store.base import (
    ApiKey,
    DeleteOutcome,
    Device,
    DeviceRegistration,
    EmailTaken,
    Store,
    User,
)


class SQLStore(Store):
    @abc.abstractmethod
    async def _write(self, sql: str, *params) -> list:
        """Run a statement that may change data; return its rows."""

    @abc.abstractmethod
    async def _read(self, sql: str, *params) -> list:
        """Run a read-only statement; return its rows."""

    @abc.abstractmethod
    def _is_unique_violation(self, exc: Exception) -> bool: ...

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def setting(self, key: str, default: str) -> str:
        (row,) = await self._write(queries.SETTING, key, default)
        return row[0]

    async def create_user(self, user_id: str, email: str, now: int) -> User:
        try:
            (row,) = await self._write(queries.CREATE_USER, user_id, email.lower(), now)
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise EmailTaken(f"a user with email {email!r} already exists") from None
            raise
        return User(*row)

    async def user_by_email(self, email: str) -> User | None:
        rows = await self._read(queries.USER_BY_EMAIL, email.lower())
        return User(*rows[0]) if rows else None

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self._read(queries.USER_EXISTS, user_id))

    async def create_api_key(
        self, key_id: str, kind: str, name: str | None, key_hash: str, now: int
    ) -> ApiKey:
        (row,) = await self._write(queries.CREATE_API_KEY, key_id, kind, name, key_hash, now)
        return ApiKey(*row)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._read(queries.API_KEY_BY_HASH, key_hash)
        return ApiKey(*rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in await self._read(queries.LIST_API_KEYS)]

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        return bool(await self._write(queries.REVOKE_API_KEY, key_id, now))

    async def register_device(
        self, device_id: str, user_id: str, reg: DeviceRegistration, now: int
    ) -> Device | None:
        rows = await self._write(
            queries.REGISTER_DEVICE, device_id, user_id, reg.channel, reg.token,
            reg.environment, reg.app_version, reg.device_model, reg.os_version, now,
        )
        return Device(*rows[0]) if rows else None

    async def list_devices(self, user_id: str) -> list[Device] | None:
        rows = await self._read(queries.LIST_DEVICES, user_id)
        if not rows:
            return None
        return [Device(*row) for row in rows if row[0] is not None]

    async def delete_device(self, user_id: str, device_id: str) -> DeleteOutcome:
        if await self._write(queries.DELETE_DEVICE, device_id, user_id):
            return DeleteOutcome.DELETED
        if await self.user_exists(user_id):
            return DeleteOutcome.NOT_FOUND
        return DeleteOutcome.NO_USER
