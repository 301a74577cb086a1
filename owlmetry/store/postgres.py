"""The PostgreSQL backend (asyncpg): production, and several server processes on one database.

Owns the connection pool and the PostgreSQL dialect; the shared statements live in `queries`.
Schema changes take an advisory lock so that processes starting together migrate one at a time.
"""

import contextlib

import asyncpg

from owlmetry.store import queries, schema_digest, schema_sql
from owlmetry.store.base import StoreError
from owlmetry.store.sql import SQLStore

# Any constant shared by every Owlmetry process; it names the migration lock.
MIGRATION_LOCK = 0x6F776C6D
# The first key of the per-email login-code locks (the second is the email's hash). Two-key
# advisory locks are a key space apart from the one-key migration lock.
LOGIN_CODE_LOCK = 0x6F776C63

# As SQLite's, but each user's devices are read through the (user_id, last_seen_at ...) index
# one user at a time: for a batch of users, the planner otherwise guesses from the table-wide
# average and scans every device. The inner ORDER BY keeps it from flattening the subquery.
DEVICES_OF_USERS = """
SELECT u.id, d.id, d.channel, d.environment, d.app_version, d.device_model, d.os_version,
       d.last_seen_at, d.created_at
FROM users AS u
LEFT JOIN LATERAL (
    SELECT * FROM user_devices
    WHERE user_devices.user_id = u.id
    ORDER BY last_seen_at DESC, created_at DESC, id
) AS d ON true
WHERE u.id = ANY($1::text[])
ORDER BY u.id, d.last_seen_at DESC, d.created_at DESC, d.id
"""


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pool reset that runs nothing: asyncpg still rolls back an open transaction itself."""


# The claim's reads with the rows fetched by key (`= ANY`): joined with the batch, the planner
# hashes the whole notifications table whenever its statistics make the table look small.
CLAIMED_NOTIFICATIONS = """
SELECT n.id, n.user_id, n.type, n.title, n.body, n.link, n.data, n.team_id,
       (SELECT count(*) FROM notifications AS unread
        WHERE unread.user_id = n.user_id AND unread.read_at IS NULL
          AND unread.deleted_at IS NULL)
FROM notifications AS n
WHERE n.id = ANY($1::text[])
"""

CLAIMED_TARGETS = """
SELECT n.id, d.id, d.token, d.environment
FROM notifications AS n
JOIN user_devices AS d ON d.user_id = n.user_id AND d.channel = $1
WHERE n.id = ANY($2::text[])
"""

UNANSWERED_TARGETS = CLAIMED_TARGETS + """  AND NOT EXISTS (
    SELECT 1 FROM notification_pushes AS p
    WHERE p.notification_id = n.id AND p.device_id = d.id)
"""

# The enqueue in one statement: inbox rows, and a delivery per channel for each row written.
# $1..$7 are the shared content, as in `queries.ENQUEUE_NOTIFICATIONS`.
ENQUEUE = """
WITH batch (id, user_id) AS (SELECT * FROM unnest($8::text[], $9::text[])),
inserted AS (
    INSERT INTO notifications (id, user_id, type, title, body, link, data, team_id, created_at)
    SELECT b.id, u.id, $1, $2, $3, $4, $5, $6, $7
    FROM batch AS b JOIN users AS u ON u.id = b.user_id
    RETURNING id),
queued AS (
    INSERT INTO notification_deliveries
        (notification_id, channel, status, available_at, created_at)
    SELECT i.id, c.channel, 'pending', $7, $7
    FROM inserted AS i CROSS JOIN unnest($10::text[]) AS c (channel))
SELECT id FROM inserted
"""

# Answers and delivery ends in one statement (one round trip, atomic), when no device is to be
# deleted; the same rules as `queries.RECORD_PUSHES` and `queries.END_DELIVERIES`.
RECORD_AND_END = """
WITH pushes (notification_id, device_id, channel, outcome, status, reason, answered_at) AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[],
                         $6::text[], $7::bigint[])),
recorded AS (
    INSERT INTO notification_pushes
        (notification_id, device_id, channel, outcome, status, reason, answered_at)
    SELECT p.* FROM pushes AS p JOIN notifications AS n ON n.id = p.notification_id
    WHERE n.id = ANY($1::text[])
    ON CONFLICT (notification_id, device_id) DO NOTHING)
UPDATE notification_deliveries AS d
SET status = b.status, reason = b.reason, available_at = b.available_at,
    finished_at = b.finished_at
FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[],
            $14::bigint[])
    AS b (notification_id, channel, status, reason, available_at, claimed_by, finished_at)
WHERE d.notification_id = ANY($8::text[])
  AND d.notification_id = b.notification_id AND d.channel = b.channel
  AND d.claimed_by = b.claimed_by AND d.status = 'pending'
"""


class PostgresStore(SQLStore):
    def __init__(self, pool: asyncpg.Pool, lease_pool: asyncpg.Pool):
        super().__init__(concurrency=pool.get_max_size())
        self._pool = pool
        self._lease_pool = lease_pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> "PostgresStore":
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
                ))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            for pool in pools:
                await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(*pools)

    async def close(self) -> None:
        await self._finish_batches()
        await self._pool.close()
        await self._lease_pool.close()

    async def backup(self, path: str) -> None:
        raise StoreError("PostgreSQL databases are backed up with pg_dump (or base backups)")

    async def migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            # Schema statements on a live database wait for every open write (other server
            # processes'); skip them when the schema is already this version's.
            if await conn.fetchval("SELECT to_regclass('settings') IS NOT NULL") and \
                    await conn.fetchval(queries.SCHEMA_DIGEST) == schema_digest():
                return
            await conn.execute(schema_sql())
            await conn.execute(queries.SET_SCHEMA_DIGEST, schema_digest())

    async def _write(self, sql: str, *params) -> list:
        return await self._pool.fetch(sql, *params)

    _read = _write

    async def _write_lease(self, sql: str, *params) -> list:
        # Without waiting for the disk: the WAL is written in order, so the commit of anything
        # done under this lease (answers, delivery ends) makes the lease durable first.
        return await self._lease_pool.fetch(sql, *params)

    _skip_locked = "FOR UPDATE SKIP LOCKED"
    # Count-then-insert is not atomic under READ COMMITTED; sends for one email take turns.
    _login_code_lock = f"SELECT pg_advisory_xact_lock({LOGIN_CODE_LOCK}, hashtext($1))"
    _claimed_notifications = CLAIMED_NOTIFICATIONS
    _claimed_targets = CLAIMED_TARGETS
    _unanswered_targets = UNANSWERED_TARGETS

    @contextlib.asynccontextmanager
    async def _transaction(self):
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn.fetch

    def _batch(self, types, first=1) -> str:
        arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(types))
        return f"SELECT * FROM unnest({arrays})"

    def _batch_args(self, rows, width) -> tuple:
        return tuple(zip(*rows)) if rows else ((),) * width

    async def _devices_of_users(self, user_ids) -> list:
        return await self._read(DEVICES_OF_USERS, user_ids)

    async def enqueue_notifications(self, recipients, content, channels, now):
        if not recipients:
            return []
        written = {row[0] for row in await self._write(
            ENQUEUE, *self._shared_content(content, now), *self._batch_args(recipients, 2),
            list(channels))}
        return [notification_id for notification_id, _ in recipients
                if notification_id in written]

    async def save_outcomes(self, owner, pushes, ends, now):
        if any(p.outcome == "removed" for p in pushes):
            return await super().save_outcomes(owner, pushes, ends, now)
        await self._write(RECORD_AND_END, *self._batch_args(self._push_rows(pushes, now), 7),
                          *self._batch_args(self._end_rows(ends, owner, now), 7))
        return pushes

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, asyncpg.UniqueViolationError)
