"""Seeding big fan-out databases fast: users and their production devices, a million rows in
seconds rather than the minutes `register_device` one by one would take.

Owns writing those rows in bulk (PostgreSQL: COPY; SQLite: executemany in big transactions
on a connection of its own) and a seeded copy kept for the next run (a template database on
PostgreSQL, a file on SQLite). The schema comes from `store.migrate()` first, so the rows are
exactly the ones the server reads; it must not seed anything else (API keys go through the
CLI, unread notifications through fanout.py). Used only by benchmarks.

Device i has the harness's token i (`harness.apns_token(i)`), so the mock's receipts say which
devices were reached; users and devices get time-ordered ids (as the server makes them), so
every index grows at its end while seeding.
"""

import asyncio
import glob
import os
import shutil
import sqlite3
from collections.abc import Callable

import harness
from owlmetry.clock import now_ms
from owlmetry.ids import new_ordered_ids
from owlmetry.store import open_store

ROWS_PER_TRANSACTION = 200_000
DEVICE_COLUMNS = ("id", "user_id", "channel", "platform", "token", "environment",
                  "app_version", "device_model", "os_version", "last_seen_at", "created_at")


def schema_version() -> str:
    """The newest migration's name: a cached seed is reused only by the schema that made it."""
    names = glob.glob(os.path.join(harness.REPO, "owlmetry", "store", "migrations", "*.sql"))
    return os.path.basename(max(names)).split(".")[0]


def rows(per_user: list[int]) -> tuple[list[tuple], list[tuple]]:
    """(users, devices) rows for `per_user[k]` devices of user k."""
    now = now_ms()
    user_ids = new_ordered_ids(now, len(per_user))
    device_ids = new_ordered_ids(now, sum(per_user))
    users = [(user_id, f"fanout{k:08d}@bench.example", now)
             for k, user_id in enumerate(user_ids)]
    devices, index = [], 0
    for user_id, count in zip(user_ids, per_user):
        for _ in range(count):
            devices.append((device_ids[index], user_id, "ios_push", "ios",
                            harness.apns_token(index), "production", "1.0", "iPhone15,3",
                            "iOS 18.2", now, now))
            index += 1
    return users, devices


async def migrate(url: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


def seed_sqlite(path: str, per_user: list[int]) -> None:
    """The schema, then the rows in transactions of ROWS_PER_TRANSACTION; checkpointed into the
    one file, so that a copy of the file is the whole database."""
    asyncio.run(migrate(f"sqlite:///{path}"))
    users, devices = rows(per_user)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        for table, columns, batch in (("users", ("id", "email", "created_at"), users),
                                      ("user_devices", DEVICE_COLUMNS, devices)):
            statement = (f"INSERT INTO {table} ({', '.join(columns)}) "
                         f"VALUES ({', '.join('?' * len(columns))})")
            for start in range(0, len(batch), ROWS_PER_TRANSACTION):
                db.execute("BEGIN")
                db.executemany(statement, batch[start:start + ROWS_PER_TRANSACTION])
                db.execute("COMMIT")
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def seed_postgres(url: str, per_user: list[int]) -> None:
    """The schema, then the rows by COPY, then VACUUM ANALYZE (statistics of a database in use,
    and no autovacuum of fresh rows during the timed run)."""
    import asyncpg

    await migrate(url)
    users, devices = rows(per_user)
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("users", records=users,
                                         columns=["id", "email", "created_at"])
        await conn.copy_records_to_table("user_devices", records=devices,
                                         columns=list(DEVICE_COLUMNS))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def user_ids_of(url: str) -> list[str]:
    """The seeded users' ids, in seeding order."""
    store = await open_store(url)
    try:
        return [user_id for (user_id,) in await store.execute(
            "SELECT id FROM users WHERE email LIKE 'fanout%' ORDER BY email")]
    finally:
        await store.close()


class SeededSQLite:
    """A seeded SQLite file per plan, copied for each run (a run changes its database).
    `cache_dir` keeps the seeded files between invocations; else they live in `work`."""

    def __init__(self, work: str, cache_dir: str | None):
        self.folder = cache_dir or work
        os.makedirs(self.folder, exist_ok=True)
        self.work = work

    def empty(self, name: str) -> str:
        return f"sqlite:///{os.path.join(self.work, f'fanout-{name}.db')}"

    def database(self, per_user: list[int], seed: int, name: str, work: str) -> str:
        key = f"fanout-{sum(per_user)}d-{len(per_user)}u-s{seed}-{schema_version()}.db"
        path = os.path.join(work, f"fanout-{name}.db")
        copy_of_seeded(os.path.join(self.folder, key), path,
                       lambda partial: seed_sqlite(partial, per_user))
        return f"sqlite:///{path}"


def copy_of_seeded(seeded: str, path: str, seed: Callable[[str], None]) -> None:
    """`path`: a copy of the SQLite file `seeded`, made first by `seed(a path)` if missing (into
    a partial file renamed once whole, so an interrupted seeding is never taken for a cache).
    `seed` leaves the whole database in its one file (checkpointed)."""
    if not os.path.exists(seeded):
        partial = seeded + ".partial"
        for leftover in glob.glob(partial + "*"):
            os.remove(leftover)
        seed(partial)
        os.replace(partial, seeded)
    shutil.copyfile(seeded, path)
    os.chmod(path, 0o600)  # the server refuses a database others can read


class SeededPostgres:
    """A seeded template database per plan in the run's cluster; each run's database is a copy
    (CREATE DATABASE ... TEMPLATE, a file copy)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.templates: set[str] = set()

    def empty(self, name: str) -> str:
        return harness.create_database(self.cluster, name)

    def database(self, per_user: list[int], seed: int, name: str, work: str) -> str:
        template = f"seed_{sum(per_user)}d_{len(per_user)}u_s{seed}"
        if template not in self.templates:
            asyncio.run(seed_postgres(harness.create_database(self.cluster, template), per_user))
            self.templates.add(template)
        return harness.create_database(self.cluster, name, template=template)
