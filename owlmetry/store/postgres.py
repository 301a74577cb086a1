"""The PostgreSQL backend (asyncpg): production, and several server processes on one database.

Owns the connection pool and the PostgreSQL dialect; the shared statements live in `queries`.
Schema changes take an advisory lock so that processes starting together migrate one at a time.
"""

import asyncio

import asyncpg

from owlmetry.store import schema_sql
from owlmetry.store.base import StoreError
from owlmetry.store.sql import SQLStore

# Any constant shared by every Owlmetry process; it names the migration lock.
MIGRATION_LOCK = 0x6F776C6D


# A batch arrives as one array per column (unnest), so any batch size is one prepared
# statement; rows go in token order so concurrent batches lock index entries in one order.
UPSERT_DEVICES = """
INSERT INTO user_devices (id, user_id, channel, token, environment,
                          app_version, device_model, os_version, last_seen_at, created_at)
SELECT r.id, u.id, r.channel, r.token, r.environment,
       r.app_version, r.device_model, r.os_version, r.seen, r.seen
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::bigint[])
     AS r (id, user_id, channel, token, environment, app_version, device_model, os_version, seen)
JOIN users AS u ON u.id = r.user_id
ORDER BY r.token
ON CONFLICT (token) DO UPDATE SET
    user_id      = excluded.user_id,
    channel      = excluded.channel,
    environment  = excluded.environment,
    app_version  = excluded.app_version,
    device_model = excluded.device_model,
    os_version   = excluded.os_version,
    last_seen_at = excluded.last_seen_at
RETURNING token, id, channel, environment, app_version, device_model, os_version,
          last_seen_at, created_at
"""

DEVICES_OF_USERS = """
SELECT u.id, d.id, d.channel, d.environment, d.app_version, d.device_model, d.os_version,
       d.last_seen_at, d.created_at
FROM users AS u LEFT JOIN user_devices AS d ON d.user_id = u.id
WHERE u.id = ANY($1::text[])
ORDER BY u.id, d.last_seen_at DESC, d.created_at DESC, d.id
"""


class PostgresStore(SQLStore):
    def __init__(self, pool: asyncpg.Pool):
        super().__init__(concurrency=pool.get_max_size())
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> "PostgresStore":
        try:
            pool = await asyncpg.create_pool(
                url, min_size=min_size, max_size=max_size, timeout=10
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                ValueError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        await self._finish_batches()
        await self._pool.close()

    async def migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            await conn.execute(schema_sql())

    async def _write(self, sql: str, *params) -> list:
        return await self._pool.fetch(sql, *params)

    _read = _write

    async def _upsert_devices(self, rows) -> list:
        return await self._write(UPSERT_DEVICES, *zip(*rows))

    async def _devices_of_users(self, user_ids) -> list:
        return await self._read(DEVICES_OF_USERS, user_ids)

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, asyncpg.UniqueViolationError)
