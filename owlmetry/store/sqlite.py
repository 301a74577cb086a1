"""The SQLite engine (aiosqlite): the embedded default, one file in WAL mode.

Writes go through one connection, one statement at a time behind an asyncio lock, so requests
queue inside the process instead of surfacing "database is locked"; reads use a second
connection, which WAL lets run beside the writer, and the dispatcher's bulk reads a third, so
that a claim of thousands of rows never holds up a health check or an authentication (each
connection runs one statement at a time). Statements autocommit. This module owns the
SQLite connections and dialect (`?1` parameters, batches as a JSON array read by json_each,
migration and backup); it must hold no statement of a feature.
"""

import asyncio
import contextlib
import functools
import os
import re
import sqlite3

import aiosqlite
import orjson

from owlmetry.clock import now_ms
from owlmetry.store.engine import Engine
from owlmetry.store.rows import StoreError
from owlmetry.store.schema import CURRENT_VERSION, VERSION_TABLE, database_version, upgrade_script

PRAGMAS = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 10000;
PRAGMA cache_size = -32768;
PRAGMA wal_autocheckpoint = 4000;
"""

# wal_autocheckpoint: 4,000 pages (16 MiB) between checkpoints instead of SQLite's 1,000. A page
# that many commits dirty (an index's hot leaves) is copied into the database once per
# checkpoint, so fewer checkpoints copy fewer pages: about a fifth less writer CPU per new
# token (benchmarks/RESULTS.md, issue 11).

@functools.cache
def to_sqlite(sql: str) -> str:
    """`$1` -> `?1`: both are "the first parameter", so a statement may use one twice."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


class SQLiteEngine(Engine):
    name = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 bulk_reader: aiosqlite.Connection):
        super().__init__(concurrency=1)
        self._writer = writer
        self._reader = reader
        self._bulk_reader = bulk_reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "SQLiteEngine":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(
                f"cannot create the SQLite database {path!r}: folder {folder!r} does not exist"
            )
        connections = []
        try:
            for _ in range(3):
                connections.append(await aiosqlite.connect(path, isolation_level=None))
                await connections[-1].executescript(PRAGMAS)
        except sqlite3.Error as exc:
            for conn in connections:
                await conn.close()
            raise StoreError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        return cls(*connections)

    async def close(self) -> None:
        await self._reader.close()
        await self._bulk_reader.close()
        async with self._write_lock:
            await self._writer.close()

    async def migrate(self) -> None:
        # Under this process's write lock; another process migrating the same file meanwhile
        # makes this transaction fail (its versions are recorded first), and the next look
        # finds the schema current.
        async with self._write_lock:
            for attempt in range(2):
                script = upgrade_script("sqlite", await self._schema_version(), now_ms())
                if script is None:
                    return
                try:
                    await self._writer.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")
                    return
                except sqlite3.Error:
                    if self._writer.in_transaction:
                        await self._writer.rollback()
                    if attempt:
                        raise

    async def backup(self, path: str) -> None:
        if os.path.lexists(path):
            raise StoreError(f"{path!r} already exists; back up to a new file")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(f"cannot write {path!r}: folder {folder!r} does not exist")
        # Copied into a side file and renamed, so `path` never holds half a backup. The bulk
        # reader copies one WAL snapshot in a single step and never waits for the writer (nor
        # holds up the requests' reads meanwhile).
        partial = f"{path}.partial"
        try:
            target = sqlite3.connect(partial)
            try:
                await self._bulk_reader.backup(target)
            finally:
                target.close()
            os.replace(partial, path)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise StoreError(f"cannot back up to {path!r}: {exc}") from exc

    async def _schema_version(self) -> int | None:
        tables = {name for (name,) in await self._writer.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        recorded = None
        if VERSION_TABLE in tables:
            ((recorded,),) = await self._writer.execute_fetchall(CURRENT_VERSION)
        return database_version(tables, recorded)

    async def write(self, sql: str, *params) -> list:
        async with self._write_lock:
            return list(await self._writer.execute_fetchall(to_sqlite(sql), params))

    async def read(self, sql: str, *params) -> list:
        return list(await self._reader.execute_fetchall(to_sqlite(sql), params))

    async def read_bulk(self, sql: str, *params) -> list:
        return list(await self._bulk_reader.execute_fetchall(to_sqlite(sql), params))

    async def execute(self, sql: str, *params) -> list:
        # A plain SELECT reads beside the writer; anything else queues for it.
        if sql.lstrip()[:6].upper() == "SELECT":
            return await self.read(sql, *params)
        return await self.write(sql, *params)

    @contextlib.asynccontextmanager
    async def transaction(self):
        async with self._write_lock:
            writer = self._writer
            await writer.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, *params: writer.execute_fetchall(to_sqlite(sql), params)
            except BaseException:
                await writer.rollback()
                raise
            await writer.commit()

    def batch(self, types, first=1) -> str:
        columns = ", ".join(f"value ->> {i}" for i in range(len(types)))
        return f"SELECT {columns} FROM json_each(${first})"

    def batch_args(self, rows, width) -> tuple:
        return (orjson.dumps(rows).decode(),)

    def is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
