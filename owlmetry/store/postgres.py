"""The PostgreSQL engine (asyncpg): production, and several server processes on one database.

Owns the connection pools and the PostgreSQL dialect: batches as one parameter per column
read by unnest (`packed_batch`), FOR UPDATE SKIP LOCKED, unique violations, the migration,
which takes an advisory lock so that processes starting together migrate one at a time, the
advisory lock that lets one process at a time run a job (`only_one_process`), which of
asyncpg's errors mean the server cannot take work (stopped, unreachable, disk full,
read-only), the advice a database's collation calls for, and the order in which this process's
statements start (`RequestsFirst`). Must hold no statement of a feature: a feature's PostgreSQL
variant lives beside its shared text in the feature's module.
"""

import asyncio
import contextlib
import logging

import asyncpg

from owlmetry.clock import now_ms
from owlmetry.store.engine import Engine
from owlmetry.store.packed_batch import array_columns, array_sql, packed_batch
from owlmetry.store.rows import DatabaseUnavailable, StoreError
from owlmetry.store.schema import upgrade_script, version_of

# Any constant shared by every Owlmetry process; it names the migration lock.
MIGRATION_LOCK = 0x6F776C6D

# The store's keys are ASCII ids and tokens: under the C collation an index compares them byte
# by byte, under a libc locale (initdb's default is the environment's) through strcoll, which
# cost 6-12% of PostgreSQL's CPU (README, "The database's collation").
DATABASE_COLLATION = "SELECT datcollate FROM pg_database WHERE datname = current_database()"
BYTEWISE_COLLATIONS = ("C", "POSIX")


def unavailable_kind(exc: BaseException) -> str | None:
    """What kind of "PostgreSQL cannot take work" `exc` is, or None for any other error (a bad
    statement, a constraint, a cancelled query)."""
    if isinstance(exc, asyncpg.DiskFullError):
        return "disk full"
    if isinstance(exc, asyncpg.InsufficientResourcesError):  # memory, connection slots
        return "out of resources"
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):  # a standby, after a failover
        return "read-only"
    if isinstance(exc, asyncpg.PostgresSystemError):
        return "I/O error"
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
                        asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError)):
        return "unreachable"  # refused, reset, timed out, shut down, starting up
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return "unreachable"  # a connection the server closed
    return None


def quiet_pool_floor(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs a traceback each time it fails to reconnect its idle connections
    (every 1 to 60 s while the server is away); the engine says the outage once instead."""
    return not record.getMessage().startswith("Failed to restore the pool connection floor")


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pool reset that runs nothing: asyncpg still rolls back an open transaction itself."""


class RequestsFirst:
    """Requests' statements before background work's, within this process: `with
    requests_first:` around a request's statement (a registration, an authentication read, a
    mark-read), `await requests_first.wait_turn()` before a bulk one starts (an enqueue chunk,
    a claim, the answers' write, a clean-up batch). PostgreSQL runs every statement at once, so
    a bulk statement started beside a request's shares the database's CPU and WAL flushes with
    it: during a million-device fan-out a registration's p99 was 108-149 ms without this and
    80-120 ms with it (benchmarks/RESULTS.md, session 21). A bulk statement waits while any
    request statement is under way, for at most `max_wait_s`, so it is delayed, never starved;
    none already running is held back. What SQLite's `WriterTurns` is for its one writer. A
    plain class, not a generator: it wraps every request statement."""

    MAX_WAIT_S = 0.05

    __slots__ = ("_idle", "_under_way", "max_wait_s")

    def __init__(self, max_wait_s: float = MAX_WAIT_S):
        self.max_wait_s = max_wait_s
        self._under_way = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def under_way(self) -> int:
        """The request statements under way."""
        return self._under_way

    def __enter__(self) -> None:
        self._under_way += 1
        if self._under_way == 1:
            self._idle.clear()

    def __exit__(self, kind, exc, traceback) -> bool:
        self._under_way -= 1
        if not self._under_way:
            self._idle.set()
        return False

    async def wait_turn(self) -> None:
        if self._under_way:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait_s):
                    await self._idle.wait()


class PostgresEngine(Engine):
    name = "postgresql"
    skip_locked = "FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: asyncpg.Pool, lease_pool: asyncpg.Pool, collation: str = "C"):
        super().__init__(concurrency=pool.get_max_size())
        self._pool = pool
        self._lease_pool = lease_pool
        self.requests_first = RequestsFirst()
        if collation not in BYTEWISE_COLLATIONS:
            self.advice = (f"the database's collation is {collation}; created with C, its "
                           "indexes cost PostgreSQL less CPU (README: \"The database's "
                           "collation\")",)

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> "PostgresEngine":
        pool_log = logging.getLogger("asyncpg.pool")
        if quiet_pool_floor not in pool_log.filters:
            pool_log.addFilter(quiet_pool_floor)
        pools = []
        try:
            for size, commit in ((max_size, "on"), (2, "off")):
                pools.append(await asyncpg.create_pool(
                    url, min_size=min(min_size, size), max_size=size, timeout=10,
                    # The statements are tiny; JIT-compiling one costs more than running it.
                    server_settings={"jit": "off", "synchronous_commit": commit},
                    # The store keeps no session state (no SET, LISTEN, cursors or session
                    # locks), so a connection going back to the pool needs no reset query --
                    # by default one extra round trip per statement.
                    reset=keep_session,
                    # A batched statement has a text per form of its batch's columns
                    # (`packed_batch`): more than asyncpg's default of 100 kept prepared.
                    statement_cache_size=1000,
                ))
            collation = await pools[0].fetchval(DATABASE_COLLATION)
        # OverflowError: a port past 65535 in the URL (the socket's own check).
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError,
                OverflowError) as exc:
            for pool in pools:
                await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(*pools, collation=collation)

    async def close(self) -> None:
        await self._pool.close()
        await self._lease_pool.close()

    async def backup(self, path: str) -> None:
        raise StoreError("PostgreSQL databases are backed up with pg_dump (or base backups)")

    async def migrate(self) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                version, refused = await version_of("postgresql", conn.fetch)
                if refused:
                    raise StoreError(refused)
                # Schema statements on a live database wait for every open write (other server
                # processes'): none run when the schema is already this release's.
                script = upgrade_script("postgresql", version, now_ms())
                if script is not None:
                    await conn.execute(script)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StoreError(
                f"the role in DATABASE_URL lacks a privilege: {exc}. It must read and write "
                "Owlmetry's tables, and to create or upgrade them own them and have CREATE on "
                "the schema (or run `owlmetry migrate` once as a role that does)") from None

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        kind = unavailable_kind(exc)
        return DatabaseUnavailable(kind, str(exc) or type(exc).__name__) if kind else None

    async def write(self, sql: str, *params) -> list:
        with self.writing, self.requests_first:
            return self.wrote(await self._pool.fetch(sql, *params))

    async def write_bulk(self, sql: str, *params) -> list:
        await self.requests_first.wait_turn()
        with self.writing:
            return self.wrote(await self._pool.fetch(sql, *params))

    async def read(self, sql: str, *params) -> list:
        # Not a write: a disk-full server still reads, and that is no sign of recovery.
        with self.reading, self.requests_first:
            return await self._pool.fetch(sql, *params)

    async def read_bulk(self, sql: str, *params) -> list:
        await self.requests_first.wait_turn()
        with self.reading:
            return await self._pool.fetch(sql, *params)

    async def write_lease(self, sql: str, *params) -> list:
        # Without waiting for the disk: the WAL is written in order, so the commit of anything
        # done under this lease (answers, delivery ends) makes the lease durable first.
        await self.requests_first.wait_turn()
        with self.writing:
            return self.wrote(await self._lease_pool.fetch(sql, *params))

    @contextlib.asynccontextmanager
    async def only_one_process(self, key: int):
        # A session lock on a connection kept for the block (not a transaction's, which would
        # hold back vacuum for as long); let go before the connection goes back to the pool,
        # whose reset runs nothing. A connection that breaks takes the lock with it.
        with self.reading:
            async with self._pool.acquire() as conn:
                ours = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
                try:
                    yield ours
                finally:
                    if ours:
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)

    @contextlib.asynccontextmanager
    async def transaction(self, bulk: bool = False):
        if bulk:
            await self.requests_first.wait_turn()
        with self.committing, contextlib.nullcontext() if bulk else self.requests_first:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn.fetch

    def batch(self, types, first=1) -> str:
        return array_sql(tuple(types), first)

    def batch_args(self, rows, width) -> tuple:
        return array_columns(rows, width)

    def packed_batch(self, types, rows, first=1) -> tuple[str, tuple]:
        return packed_batch(tuple(types), rows, first)

    def is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, asyncpg.UniqueViolationError)
