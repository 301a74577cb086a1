"""The SQLite backend (aiosqlite): the embedded default, one file in WAL mode.

Writes go through one connection, one statement at a time behind an asyncio lock, so requests
queue inside the process instead of surfacing "database is locked"; reads use a second
connection, which WAL lets run beside the writer. Statements autocommit. This module owns the
SQLite connections and dialect; the shared statements live in `queries`.
"""

import asyncio
import functools
import os
import re
import sqlite3

import aiosqlite
import orjson

from owlmetry.store import schema_sql
from owlmetry.store.base import StoreError
from owlmetry.store.sql import SQLStore

PRAGMAS = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 10000;
"""


# A batch arrives as one JSON array of rows (json_each), so any batch size is one statement.
UPSERT_DEVICES = """
INSERT INTO user_devices (id, user_id, channel, token, environment,
                          app_version, device_model, os_version, last_seen_at, created_at)
SELECT r.value ->> 0, u.id, r.value ->> 2, r.value ->> 3, r.value ->> 4,
       r.value ->> 5, r.value ->> 6, r.value ->> 7, r.value ->> 8, r.value ->> 8
FROM json_each(?1) AS r JOIN users AS u ON u.id = r.value ->> 1
WHERE true
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
WHERE u.id IN (SELECT value FROM json_each(?1))
ORDER BY u.id, d.last_seen_at DESC, d.created_at DESC, d.id
"""


@functools.cache
def to_sqlite(sql: str) -> str:
    """`$1` -> `?1`: both are "the first parameter", so a statement may use one twice."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


class SQLiteStore(SQLStore):
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        super().__init__(concurrency=1)
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "SQLiteStore":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(
                f"cannot create the SQLite database {path!r}: folder {folder!r} does not exist"
            )
        connections = []
        try:
            for _ in range(2):
                connections.append(await aiosqlite.connect(path, isolation_level=None))
                await connections[-1].executescript(PRAGMAS)
        except sqlite3.Error as exc:
            for conn in connections:
                await conn.close()
            raise StoreError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        return cls(*connections)

    async def close(self) -> None:
        await self._finish_batches()
        await self._reader.close()
        async with self._write_lock:
            await self._writer.close()

    async def migrate(self) -> None:
        async with self._write_lock:
            try:
                await self._writer.executescript("BEGIN IMMEDIATE;\n" + schema_sql() + "\nCOMMIT;")
            except sqlite3.Error:
                if self._writer.in_transaction:
                    await self._writer.rollback()
                raise

    async def _write(self, sql: str, *params) -> list:
        async with self._write_lock:
            return list(await self._writer.execute_fetchall(to_sqlite(sql), params))

    async def _read(self, sql: str, *params) -> list:
        return list(await self._reader.execute_fetchall(to_sqlite(sql), params))

    async def _upsert_devices(self, rows) -> list:
        return await self._write(UPSERT_DEVICES, orjson.dumps(rows).decode())

    async def _devices_of_users(self, user_ids) -> list:
        return await self._read(DEVICES_OF_USERS, orjson.dumps(user_ids).decode())

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
