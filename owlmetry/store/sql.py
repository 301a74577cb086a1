"""What both SQL backends do the same way: the `Store` methods, in terms of a few primitives.

A backend supplies `_write` and `_read` (run one statement from `queries`, return its rows),
`_is_unique_violation`, and the two batched statements, `_upsert_devices` and
`_devices_of_users`, which take a whole batch as one parameter in the backend's own way. Registrations and device lists are coalesced (`batching`), so a busy
server makes one trip to the database for many requests. This class turns rows into the
interface's dataclasses; it must not hold connection logic or dialect-specific SQL.
"""

import abc
from collections.abc import Sequence

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
from owlmetry.store.batching import Batcher

# (device_id, user_id, channel, token, environment, app_version, device_model, os_version, now)
RegistrationRow = tuple
TOKEN = 3


class SQLStore(Store):
    def __init__(self, *, concurrency: int):
        self._registrations = Batcher(self._register_batch, concurrency=concurrency)
        self._device_lists = Batcher(self._list_batch, concurrency=concurrency)

    @abc.abstractmethod
    async def _write(self, sql: str, *params) -> list:
        """Run a statement that may change data; return its rows."""

    @abc.abstractmethod
    async def _read(self, sql: str, *params) -> list:
        """Run a read-only statement; return its rows."""

    @abc.abstractmethod
    def _is_unique_violation(self, exc: Exception) -> bool: ...

    @abc.abstractmethod
    async def _upsert_devices(self, rows: Sequence[RegistrationRow]) -> list:
        """Register every row (distinct tokens) in one statement whose rows are (token, *Device).

        Rows of users that do not exist are skipped and come back as nothing.
        """

    @abc.abstractmethod
    async def _devices_of_users(self, user_ids: Sequence[str]) -> list:
        """Rows (user_id, *Device) in list order per user, Device all NULL for a user without
        devices, nothing for a user that does not exist."""

    async def _finish_batches(self) -> None:
        await self._registrations.wait_idle()
        await self._device_lists.wait_idle()

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
        return await self._registrations.submit((
            device_id, user_id, reg.channel, reg.token, reg.environment,
            reg.app_version, reg.device_model, reg.os_version, now,
        ))

    async def _register_batch(self, rows: Sequence[RegistrationRow]) -> list[Device | None]:
        # One statement may not touch a token twice, so the last request for a token goes in
        # and the others with that token get its row, as if they had come just before it. If
        # that last request's user is gone, the others go again in a next round.
        results: list[Device | None] = [None] * len(rows)
        waiting = range(len(rows))
        while waiting:
            last = {rows[i][TOKEN]: i for i in waiting}
            stored = await self._upsert_devices([rows[i] for i in last.values()])
            devices = {row[0]: Device(*row[1:]) for row in stored}
            again = []
            for i in waiting:
                token = rows[i][TOKEN]
                if token in devices:
                    results[i] = devices[token]
                elif last[token] != i:
                    again.append(i)
            waiting = again
        return results

    async def list_devices(self, user_id: str) -> list[Device] | None:
        return await self._device_lists.submit(user_id)

    async def _list_batch(self, user_ids: Sequence[str]) -> list[list[Device] | None]:
        devices: dict[str, list[Device]] = {}
        for user_id, *device in await self._devices_of_users(list(set(user_ids))):
            found = devices.setdefault(user_id, [])
            if device[0] is not None:
                found.append(Device(*device))
        return [devices.get(user_id) for user_id in user_ids]

    async def delete_device(self, user_id: str, device_id: str) -> DeleteOutcome:
        if await self._write(queries.DELETE_DEVICE, device_id, user_id):
            return DeleteOutcome.DELETED
        if await self.user_exists(user_id):
            return DeleteOutcome.NOT_FOUND
        return DeleteOutcome.NO_USER
