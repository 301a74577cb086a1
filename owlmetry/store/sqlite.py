"""The SQLite engine (aiosqlite): the embedded default, one file in WAL mode.

Writes go through one connection, one statement or transaction at a time (`WriterTurns`), so
requests queue inside the process instead of surfacing "database is locked", and a request's
write goes before the background's bulk work waiting with it; reads use a second
connection, which WAL lets run beside the writer, and the dispatcher's bulk reads a third, so
that a claim of thousands of rows never holds up a health check or an authentication (each
connection runs one statement at a time); a fourth checkpoints the WAL into the database every
second, so that no write pays for it. Statements autocommit. Every write first checks that
the path still names the file the connections opened: a file deleted (or replaced) under a
running server would otherwise take writes that vanish at the next start. This module owns the
SQLite connections and dialect (`?1` parameters, batches as bound `VALUES` rows or, past
`bound_size`, a JSON array read by json_each, migration and backup); it must hold no statement
of a feature.
"""

import asyncio
import collections
import contextlib
import functools
import logging
import os
import re
import sqlite3

import aiosqlite
import orjson

from owlmetry.clock import now_ms
from owlmetry.private_files import (
    DATABASE_REFUSED_BITS,
    UnfitFile,
    create_private,
    refuse_unfit,
)
from owlmetry.store.engine import Engine, drive_now
from owlmetry.store.rows import DatabaseUnavailable, StoreError
from owlmetry.store.schema import upgrade_script, version_of

log = logging.getLogger("owlmetry.store")
# aiosqlite logs every statement with its parameters (device tokens, key hashes, addresses) at
# DEBUG: never, whatever level the root logger is given.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

PRAGMAS = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 10000;
PRAGMA cache_size = -32768;
PRAGMA wal_autocheckpoint = 16000;
"""

# wal_autocheckpoint: 16,000 pages (64 MiB) between checkpoints instead of SQLite's 1,000. A page
# that many commits dirty (an index's hot leaves) is copied into the database once per
# checkpoint, so fewer checkpoints copy fewer pages: about a fifth less writer CPU per new
# token at 4,000 (issue 11), and a tenth less again at 16,000 on a million devices (issue 15;
# benchmarks/RESULTS.md).
# The writer's own checkpoint is only the backstop: a checkpoint run at a commit copies up to
# 64 MiB while the writer is held (a registration waited ~200 ms behind one), so a connection of
# its own checkpoints every CHECKPOINT_EVERY_S, beside the writer (PASSIVE: it never waits for,
# nor holds up, the writer or the readers; the copy is in its own thread, out of the GIL).
CHECKPOINT_EVERY_S = 1.0
# synchronous = NORMAL: the WAL is synced at checkpoints, not at each commit. A commit survives
# the process dying (SIGKILL, OOM) but not the machine (power, kernel): the commits since the
# last checkpoint may then be gone, the file still consistent (README, "Durability"). FULL
# would sync every commit on the one writer (measured in RESULTS.md, issue 15).


class WriterTurns:
    """Whose turn it is on the one writer. A request's write (a registration, a mark-read)
    goes before bulk work waiting with it -- a producer's enqueue chunks, the dispatcher's
    claims and answers, the clean-up's batches, each a bounded transaction -- so it waits for
    the one under way, not for the queue of them. Bulk work still gets a turn after at most
    `REQUESTS_AHEAD` request writes that went before it. First come, first served otherwise."""

    REQUESTS_AHEAD = 16

    def __init__(self):
        self._busy = False
        self._waiting: dict[bool, collections.deque[asyncio.Future]] = {
            False: collections.deque(), True: collections.deque()}
        self._ahead = 0  # request turns given while bulk work waited
        self._bulk_turn = False  # the turn under way is bulk work's

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def bulk_pending(self) -> bool:
        """Bulk work holds the writer, or waits for it."""
        return (self._busy and self._bulk_turn) or bool(self._waiting[True])

    @contextlib.asynccontextmanager
    async def turn(self, bulk: bool = False):
        if self._busy:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[bulk].append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._next()  # handed the turn just as it was cancelled: pass it on
                raise
        else:
            self._busy = True
        self._bulk_turn = bulk
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        """Hand the writer to the next waiter (it stays busy), or free it."""
        requests, bulk = self._waiting[False], self._waiting[True]
        for queue in ((bulk, requests) if self._ahead >= self.REQUESTS_AHEAD
                      else (requests, bulk)):
            while queue:
                waiter = queue.popleft()
                if waiter.done():  # cancelled while waiting
                    continue
                self._ahead = self._ahead + 1 if queue is requests and bulk else 0
                waiter.set_result(None)
                return
        self._busy = False


# SQLite's primary result codes that mean the database cannot take work (not a bad statement).
UNAVAILABLE = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_IOERR: "I/O error",
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_CANTOPEN: "cannot open the file",
    sqlite3.SQLITE_CORRUPT: "corrupt",
    sqlite3.SQLITE_NOTADB: "corrupt",
    sqlite3.SQLITE_BUSY: "locked by another process",
}
FILE_GONE = "file deleted or replaced"


def file_identity(path: str) -> tuple[int, int]:
    """What tells a file from another put at the same path: its device and inode."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


# The files of one database. SQLite makes the last three with the database's own mode.
SIDE_FILES = ("", "-wal", "-shm", "-journal")


# A batch of several columns goes as bound parameters, one `VALUES` row per row, padded to the
# next of BOUND_SIZES (with zeros, the cheapest values to bind) and cut by a LIMIT: SQLite 3.40's
# JSON functions render each row's array again and parse it again for each of its columns
# (`value ->> i`), ~3,300 instructions a value, a sixth of the server's instructions a
# fan-out's device; a bound value costs a few hundred. Powers of two keep the statements few,
# each prepared once per connection (STATEMENTS_KEPT); up to 256 rows, as a prepared statement
# of 256 rows of 11 values holds ~1 MB (the answers' writes go in pieces of that many,
# `Engine.rows_per_statement`). A bigger batch, and a batch of one column (a flat array, whose
# values json_each hands out as they are), go as JSON.
BOUND_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
# Prepared statements kept per connection (Python's default, 128, is fewer than a fan-out's
# statements times their sizes).
STATEMENTS_KEPT = 512


def bound_size(count: int, width: int, max_parameters: int) -> int | None:
    """The rows a batch of `count` rows of `width` columns is padded to, if it goes bound."""
    if width < 2 or count < 2:
        return None
    for size in BOUND_SIZES:
        if size >= count:
            return size if size * width < max_parameters else None
    return None


@functools.cache
def bound_batch(width: int, size: int, first: int) -> str:
    """Rows from `size` rows of parameters from `$first`, the LIMIT after them. Only the first is
    numbered: each `?` is the one after the last, and SQLite looks up the name of each numbered
    one in a list of them all while it prepares the statement (a time a parameter squared)."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"SELECT * FROM (VALUES (${first}{', ?' * (width - 1)}){f', {row}' * (size - 1)}) LIMIT ?"


def bound_args(rows, width: int, size: int) -> tuple:
    return (*[value for row in rows for value in row], *[0] * ((size - len(rows)) * width),
            len(rows))


@functools.cache
def to_sqlite(sql: str) -> str:
    """`$1` -> `?1`: both are "the first parameter", so a statement may use one twice."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


def one_transaction(connection: sqlite3.Connection, body):
    """`body(run)` in one transaction on `connection`, in the thread that owns it."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = body(lambda sql, *params: connection.execute(to_sqlite(sql), params).fetchall())
        connection.execute("COMMIT")
        return result
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


class SQLiteEngine(Engine):
    name = "sqlite"
    rows_per_statement = BOUND_SIZES[-1]

    def __init__(self, path: str, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 bulk_reader: aiosqlite.Connection, checkpointer: aiosqlite.Connection,
                 max_parameters: int):
        super().__init__(concurrency=1)
        self._path = path
        self._file = file_identity(path)  # the file the connections opened
        self._writer = writer
        self._reader = reader
        self._bulk_reader = bulk_reader
        self._turns = WriterTurns()
        self._checkpointer = checkpointer
        self._max_parameters = max_parameters
        self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_regularly())

    async def _checkpoint_regularly(self) -> None:
        failed = False
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
                failed = False
            except sqlite3.Error as exc:  # the writer's checkpoints still run; said once
                if not failed:
                    log.warning("cannot checkpoint the SQLite database: %s", exc)
                failed = True

    @classmethod
    async def open(cls, path: str) -> "SQLiteEngine":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(
                f"cannot create the SQLite database {path!r}: folder {folder!r} does not exist"
            )
        # Made by us, 0600, before SQLite would make it with the umask's mode (0644 as a rule):
        # the database holds every user's devices.
        try:
            create_private(path)
            refuse_unfit([path + side for side in SIDE_FILES], f"the SQLite database {path}",
                         DATABASE_REFUSED_BITS)
        except UnfitFile as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot create the SQLite database {path!r}: {exc.strerror}") from None
        connections = []
        try:
            for _ in range(4):
                connections.append(await aiosqlite.connect(
                    path, isolation_level=None, cached_statements=STATEMENTS_KEPT))
                await connections[-1].executescript(PRAGMAS)
            writer = connections[0]
            max_parameters = await writer._execute(  # in the connection's own thread
                writer._conn.getlimit, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except sqlite3.Error as exc:
            for conn in connections:
                await conn.close()
            raise StoreError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        return cls(path, *connections, max_parameters)

    async def close(self) -> None:
        self._checkpoints.cancel()
        await asyncio.gather(self._checkpoints, return_exceptions=True)
        await self._checkpointer.close()
        await self._reader.close()
        await self._bulk_reader.close()
        async with self._turns.turn():
            await self._writer.close()

    async def migrate(self) -> None:
        # In this process's writer turn; another process migrating the same file meanwhile
        # makes this transaction fail (its versions are recorded first), and the next look
        # finds the schema current.
        async with self._turns.turn():
            for attempt in range(2):
                script = upgrade_script("sqlite", await self._schema_version(), now_ms())
                if script is None:
                    return
                # Foreign keys off (only outside a transaction can they be): a migration that
                # rebuilds a table drops the old one, which must not cascade to the rows that
                # point at it.
                await self._writer.execute("PRAGMA foreign_keys = OFF")
                try:
                    await self._writer.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")
                    return
                except sqlite3.Error:
                    if self._writer.in_transaction:
                        await self._writer.rollback()
                    if attempt:
                        raise
                finally:
                    await self._writer.execute("PRAGMA foreign_keys = ON")

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
            # Private from the start, as the database is: SQLite gives its journal the same mode.
            if not create_private(partial):
                raise StoreError(f"{partial!r} exists (a backup under way?); remove it first")
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
        version, refused = await version_of(
            "sqlite", lambda sql, *args: self._writer.execute_fetchall(to_sqlite(sql), args))
        if refused:
            raise StoreError(refused)
        return version

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        if isinstance(exc, sqlite3.Error):
            kind = UNAVAILABLE.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
            if kind is not None:
                return DatabaseUnavailable(kind, str(exc))
        return None

    def _check_file(self) -> None:
        """DatabaseUnavailable unless the path still names the file that was opened. For good:
        the connections cannot reach a file put there since, so it takes a restart."""
        try:
            if file_identity(self._path) == self._file:
                return
            detail = f"{self._path} is no longer the file the server opened"
        except FileNotFoundError:
            detail = f"{self._path} was deleted"
        except OSError as exc:
            raise DatabaseUnavailable("I/O error", f"cannot look at {self._path}: {exc}") from None
        raise DatabaseUnavailable(
            FILE_GONE, f"{detail}; writes would be lost, restart the server to open it again")

    async def write(self, sql: str, *params) -> list:
        return await self._write(sql, params, bulk=False)

    async def write_bulk(self, sql: str, *params) -> list:
        return await self._write(sql, params, bulk=True)

    async def _write(self, sql: str, params: tuple, bulk: bool) -> list:
        with self.writing:
            async with self._turns.turn(bulk):
                self._check_file()
                return self.wrote(list(await self._writer.execute_fetchall(to_sqlite(sql),
                                                                           params)))

    async def read(self, sql: str, *params) -> list:
        with self.reading:
            return list(await self._reader.execute_fetchall(to_sqlite(sql), params))

    async def read_bulk(self, sql: str, *params) -> list:
        with self.reading:
            return list(await self._bulk_reader.execute_fetchall(to_sqlite(sql), params))

    def request_batches(self, most: int) -> int:
        # One batch while the writer is free of bulk work: the registrations that come
        # meanwhile make the next batch bigger, one commit for more of them (8% less CPU a new
        # token, benchmarks/RESULTS.md, session 23). `most` while bulk work holds or waits for
        # the writer: a registration that comes then starts a batch of its own, which waits
        # for one bulk turn, not for a batch that waited for one and then another.
        return most if self._turns.bulk_pending else 1

    async def execute(self, sql: str, *params) -> list:
        # A plain SELECT reads beside the writer; anything else queues for it.
        if sql.lstrip()[:6].upper() == "SELECT":
            return await self.read(sql, *params)
        return await self.write(sql, *params)

    @contextlib.asynccontextmanager
    async def transaction(self, bulk: bool = False):
        with self.committing:
            async with self._turns.turn(bulk):
                self._check_file()
                writer = self._writer
                await writer.execute("BEGIN IMMEDIATE")
                try:
                    yield lambda sql, *params: writer.execute_fetchall(to_sqlite(sql), params)
                    await writer.commit()
                except BaseException:
                    # A failed COMMIT (disk full, I/O) may leave the transaction open.
                    with contextlib.suppress(sqlite3.Error):
                        await writer.rollback()
                    raise

    async def run_steps(self, steps, bulk=False):
        return await self.in_one_step(functools.partial(drive_now, steps), bulk)

    async def in_one_step(self, body, bulk=False):
        with self.committing:
            async with self._turns.turn(bulk):
                self._check_file()
                # aiosqlite's own door to its thread (every public method goes through it).
                return await self._writer._execute(one_transaction, self._writer._conn, body)

    def batch(self, types, first=1) -> str:
        if len(types) == 1:
            return f"SELECT value FROM json_each(${first})"
        columns = ", ".join(f"value ->> {i}" for i in range(len(types)))
        return f"SELECT {columns} FROM json_each(${first})"

    def batch_args(self, rows, width) -> tuple:
        if width == 1:
            return (orjson.dumps([value for (value,) in rows]).decode(),)
        return (orjson.dumps(rows).decode(),)

    def packed_batch(self, types, rows, first=1):
        width = len(types)
        size = bound_size(len(rows), width, self._max_parameters)
        if size is None:
            return self.batch(types, first), self.batch_args(rows, width)
        return bound_batch(width, size, first), bound_args(rows, width, size)

    def is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
