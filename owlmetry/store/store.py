"""`Store`: the one store class, assembled from the feature modules over an engine.

Each feature module (`users`, `sessions`, `login_codes`, `devices`, `inbox`, `deliveries`,
`metrics_reads`, `retention`, `health`, `recipients`, `schedules`, `idempotency`,
`delivery_status`, `vacuum`) holds its part of the interface, its SQL and its row mapping;
this module adds what is the whole database's: closing, migrating, backups, settings, and the
raw-SQL door for checks. Must hold no feature's statement.
"""

from collections.abc import Sequence

from owlmetry.store.deliveries import Deliveries
from owlmetry.store.delivery_status import DeliveryStatusReads
from owlmetry.store.devices import Devices
from owlmetry.store.engine import Engine
from owlmetry.store.health import Health
from owlmetry.store.idempotency import IdempotencyKeys
from owlmetry.store.inbox import Inbox
from owlmetry.store.login_codes import LoginCodes
from owlmetry.store.metrics_reads import MetricsReads
from owlmetry.store.recipients import Recipients
from owlmetry.store.retention import Retention
from owlmetry.store.schedules import Schedules
from owlmetry.store.sessions import SessionRevocations
from owlmetry.store.users import UsersAndKeys
from owlmetry.store.vacuum import Vacuuming

SETTING = """
INSERT INTO settings (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = settings.value
RETURNING value
"""


class Store(UsersAndKeys, SessionRevocations, LoginCodes, Devices, Inbox, Deliveries,
            MetricsReads, Retention, Health, Recipients, Schedules, IdempotencyKeys,
            DeliveryStatusReads, Vacuuming):
    """One database. Open it with `owlmetry.store.open_store(url)`; close it when done."""

    def __init__(self, engine: Engine):
        self.engine = engine
        super().__init__()  # the features' own state (the device batches)

    async def close(self) -> None:
        await self._finish_device_batches()
        await self.engine.close()

    async def migrate(self) -> None:
        """Create or upgrade the schema (schema.sql); safe to run any number of times."""
        await self.engine.migrate()

    def advice(self) -> tuple[str, ...]:
        """What an operator should hear about this database at a server's start, if anything
        (a setting that costs it)."""
        return self.engine.advice

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.engine.read("SELECT 1")

    async def backup(self, path: str) -> None:
        """Write a consistent copy of the whole database to the new file `path`, while the
        database is in use. StoreError where the engine has its own tools for this."""
        await self.engine.backup(path)

    async def setting(self, key: str, default: str) -> str:
        """The stored value of `key`; stores `default` first if there is none (first writer
        wins)."""
        (row,) = await self.engine.write(SETTING, key, default)
        return row[0]

    # ---- Raw SQL: for checks, scripts and benchmarks; the service itself never uses them. --

    async def execute(self, sql: str, *params) -> list[tuple]:
        """Run one statement on its own (autocommit), with `$1`-style placeholders on both
        engines; its rows as tuples. For checks, scripts and benchmarks; the service itself
        never uses it."""
        return [tuple(row) for row in await self.engine.execute(sql, *params)]

    async def execute_batch(self, sql: str, types: Sequence[str], rows: Sequence[tuple],
                            *params) -> list[tuple]:
        """Run one statement in which `{batch}` stands for a row source of `rows` (one tuple per
        row; `types` are their columns' PostgreSQL types, like ("text", "bigint")); any other
        brace is doubled (`str.format`). `params` are `$1..$k`, the batch's parameters come
        after them. No-op returning [] when `rows` is empty. For checks, scripts and
        benchmarks; the service itself never uses it."""
        found = await self.engine.run_batched(self.engine.execute, sql, tuple(types), rows,
                                              *params)
        return [tuple(row) for row in found]
