"""What the store needs from a database engine: run statements, transactions, batches.

A transaction whose statements depend on earlier ones' rows may be written as steps, a
generator of statements without I/O (`Steps`), which each engine drives its own way
(`run_steps`: SQLite in one step of its writer's thread, PostgreSQL statement by statement).

An engine (`sqlite.SQLiteEngine`, `postgres.PostgresEngine`) owns its connections and its
dialect: how parameters are written, how a whole batch of rows travels as parameters and
becomes rows again (`{batch}` in a statement), row locks, unique violations, migration and
backup. Statements are written with `$1`-style placeholders for both. Every statement runs
inside the engine's `reading` or `writing` guard, which turns the driver's "the database cannot
take work" errors into `DatabaseUnavailable` (the engine's `unavailable` says which are) and
tells the engine's `Availability`. This module must hold no statement of a feature: those live
in the feature modules.
"""

import abc
import contextlib
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, TypeVar

from owlmetry.store.availability import Availability
from owlmetry.store.rows import DatabaseUnavailable, StoreError

# `await run(sql, *params)` -> rows: a statement on a connection or in a transaction.
Run = Callable[..., Awaitable[list]]
# A statement run at once, in a step that runs in the database's own thread (`in_one_step`).
RunNow = Callable[..., list]
T = TypeVar("T")
# A transaction written without I/O (`Engine.run_steps`): each `rows = yield (sql, *params)`
# is a statement and its rows, and what the generator returns is the transaction's result.
Steps = Generator[tuple, list, T]


def drive_now(steps: Steps, run: RunNow) -> T:
    """`steps`, each statement run at once (inside `in_one_step`)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(run(*statement))
    except StopIteration as end:
        return end.value


async def drive(steps: Steps, run: Run) -> T:
    """`steps`, each statement awaited (inside `transaction`)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(await run(*statement))
    except StopIteration as end:
        return end.value


class Guard:
    """`with engine.reading:` (or `writing`, `committing`) around a statement: a driver error
    that means the database is unavailable leaves as `DatabaseUnavailable`, and is recorded.
    `committing` (a transaction) ends an outage when it commits; a single statement does when
    it wrote rows (`Engine.wrote`): a claim that finds nothing to do proves nothing on a full
    disk. A plain class, not a generator: it wraps every statement."""

    __slots__ = ("availability", "commits", "engine")

    def __init__(self, engine: "Engine", commits: bool):
        self.engine = engine
        self.availability = engine.availability
        self.commits = commits

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None:
            if self.commits and self.availability.down is not None:
                self.availability.succeeded()
            return False
        if isinstance(exc, DatabaseUnavailable):
            self.availability.failed(exc)
            return False
        down = self.engine.unavailable(exc)
        if down is None:
            return False
        self.availability.failed(down)
        raise down from exc


class Engine(abc.ABC):
    # The engine's name, as `check_database_url` says it: the key of a per-engine statement.
    name: ClassVar[str]
    # Added to a SELECT that picks rows to update: PostgreSQL skips rows another transaction
    # holds (FOR UPDATE SKIP LOCKED); SQLite, with one writer, has none to skip.
    skip_locked: ClassVar[str] = ""
    # The rows a batch of many is best written in per statement, where pieces cost less than one
    # statement (SQLite: `sqlite.BOUND_SIZES`); None: one statement.
    rows_per_statement: ClassVar[int | None] = None
    # What an operator should hear about this database once a server has started on it (one
    # log line each): a setting that costs it, say.
    advice: tuple[str, ...] = ()

    def __init__(self, *, concurrency: int):
        self.concurrency = concurrency  # statements worth running at once (the store's batches)
        self._statements: dict[tuple, str] = {}
        self.availability = Availability()
        self.reading = self.writing = Guard(self, commits=False)
        self.committing = Guard(self, commits=True)

    def wrote(self, rows: list) -> list:
        """`rows`, a single write's: rows written are a sign the database takes work again."""
        if rows and self.availability.down is not None:
            self.availability.succeeded()
        return rows

    @abc.abstractmethod
    def unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        """`exc`, a driver's error, as `DatabaseUnavailable` when it means the database cannot
        take work now (not a bad statement, not a constraint); else None."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema (schema.sql); safe to run any number of times."""

    async def backup(self, path: str) -> None:
        """Write a consistent copy of the whole database to the new file `path`, while the
        database is in use. StoreError where the engine has its own tools for this."""
        raise StoreError("this database is backed up with its own tools")

    @abc.abstractmethod
    async def write(self, sql: str, *params) -> list:
        """Run a statement that may change data, on its own (autocommit); return its rows."""

    def request_batches(self, most: int) -> int:
        """How many batches of requests' statements of one kind (registrations) to run at once
        now, at most `most`."""
        return most

    async def write_bulk(self, sql: str, *params) -> list:
        """`write` for background work (an enqueue chunk, the answers' write, a clean-up
        batch), which the engine lets requests' statements go before."""
        return await self.write(sql, *params)

    @abc.abstractmethod
    async def read(self, sql: str, *params) -> list:
        """Run a read-only statement; return its rows."""

    async def read_bulk(self, sql: str, *params) -> list:
        """A read-only statement of background work, over many rows (a claim's content and
        targets, an enqueue's preferences, progress): kept off the way of `read`, which serves
        requests (health checks, authentication), where the engine has only a few connections,
        and started after the requests' statements under way (PostgreSQL's `RequestsFirst`)."""
        return await self.read(sql, *params)

    async def execute(self, sql: str, *params) -> list:
        """Any one statement on its own (autocommit): the raw-SQL door's, `Store.execute`."""
        return await self.write(sql, *params)

    async def write_lease(self, sql: str, *params) -> list:
        """A claim or lease renewal: background work (`write_bulk`) whose loss in a database
        crash only makes work claimable again, so the engine may skip waiting for the disk."""
        return await self.write_bulk(sql, *params)

    @contextlib.asynccontextmanager
    async def only_one_process(self, key: int):
        """`async with engine.only_one_process(key) as ours:` -- `ours` is False while another
        process of the database holds `key` (then do nothing); held until the block ends.
        SQLite: True (one server process per database file; a second one's statements take
        turns with the first's anyway)."""
        yield True

    @abc.abstractmethod
    def transaction(self, bulk: bool = False) -> AbstractAsyncContextManager[Run]:
        """`async with engine.transaction() as run:` -- `await run(sql, *params)` -> rows, all
        in one transaction that commits at the end of the block (or rolls back on an error).
        `bulk`: background work (an enqueue's chunk, a dispatcher's answers, a clean-up batch),
        which the engine lets requests' statements go before (SQLite: its writer's turns,
        PostgreSQL: `RequestsFirst`)."""

    async def run_steps(self, steps: Steps, bulk: bool = False) -> T:
        """`steps` in one transaction, statement by statement (SQLite: in one step,
        `in_one_step`, so its writer is held for the statements alone)."""
        async with self.transaction(bulk) as run:
            return await drive(steps, run)

    async def in_one_step(self, body: Callable[[RunNow], T], bulk: bool = False) -> T:
        """`body(run)` in one transaction, run whole where the driver runs statements (SQLite:
        its writer's thread), `run(sql, *params)` -> rows at once: the writer is held for the
        statements' own time, not also for an event-loop turn between each (a request's write
        waiting behind a bulk transaction waited for every turn of it). Only for engines whose
        statements are calls into a thread; PostgreSQL's bulk writes are single statements."""
        raise StoreError(f"{self.name} has no one-step transactions")

    @abc.abstractmethod
    def is_unique_violation(self, exc: Exception) -> bool: ...

    @abc.abstractmethod
    def batch(self, types: tuple[str, ...], first: int = 1) -> str:
        """SQL yielding one row per item of a batch passed as parameter(s) from `$first` on;
        `types` are the columns' PostgreSQL types."""

    @abc.abstractmethod
    def batch_args(self, rows: Sequence[tuple], width: int) -> tuple:
        """The parameter(s) that carry `rows` (tuples of `width` values) to `batch`."""

    def packed_batch(self, types: tuple[str, ...], rows: Sequence[tuple],
                     first: int = 1) -> tuple[str, tuple]:
        """`batch` and `batch_args` at once, for an engine that picks the SQL by the rows
        (PostgreSQL: `owlmetry.store.packed_batch`)."""
        return self.batch(types, first), self.batch_args(rows, len(types))

    def batched(self, template: str, batch: str) -> str:
        """`template` with `{batch}` filled in (kept once made)."""
        statement = self._statements.get((template, batch))
        if statement is None:
            statement = self._statements[(template, batch)] = template.format(batch=batch)
        return statement

    async def run_batched(self, run: Run, template: str, types: tuple[str, ...],
                          rows: Sequence[tuple], *params) -> list:
        """Run `template` on `rows` with `run` (no-op when empty); `params` are its $1.., the
        batch's parameters come after them."""
        if not rows:
            return []
        return await run(*self.batch_call(template, types, rows, params))

    def run_batched_now(self, run: RunNow, template: str, types: tuple[str, ...],
                        rows: Sequence[tuple], *params) -> list:
        """`run_batched` inside `in_one_step`."""
        return run(*self.batch_call(template, types, rows, params)) if rows else []

    def batch_call(self, template: str, types: tuple[str, ...], rows: Sequence[tuple],
                   params: tuple) -> tuple:
        """The statement and arguments that run `template` on `rows` after `params`. A template
        without `{batch}` reads the batch's columns as arrays itself (`= ANY($1::text[])`)."""
        if "{batch}" not in template:
            return (template, *params, *self.batch_args(rows, len(types)))
        batch, args = self.packed_batch(types, rows, len(params) + 1)
        return (self.batched(template, batch), *params, *args)
