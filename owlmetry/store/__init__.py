"""The database: one `Store` over one of two engines, and the only door to the database.

`open_store(url)` picks the engine from the URL: `sqlite:///path` (aiosqlite, the embedded
default) or `postgresql://...` (asyncpg, production). Layout: `rows` (the rows, enums and
errors callers see), `store` (the `Store` class) assembled from one module per feature
(`users`, `sessions`, `login_codes`, `devices`, `inbox`, `deliveries`, `metrics_reads`,
`retention`, `health` (the write probe), `recipients`, `schedules`, `idempotency`,
`delivery_status`: interface, SQL for both engines and row mapping; `unread_counts`, the
counter's statements the inbox and the queue share), `engine` with `sqlite` and `postgres`
(connections, transactions, dialect, which errors mean "database unavailable"),
`availability` (the log of outages), `schema` (schema.sql and the migrations between
versions), `batching` (coalescing calls).
No SQL lives outside this package.
"""

from owlmetry.redact import url_without_password
from owlmetry.store.deliveries import ENQUEUE_AT_ONCE
from owlmetry.store.idempotency import IdempotencyRecord
from owlmetry.store.rows import (
    RECORDED_OUTCOMES,
    ApiKey,
    ChannelStatus,
    Claim,
    DatabaseUnavailable,
    DeleteResult,
    DeliveryEnd,
    DeliveryStatus,
    Device,
    DeviceChannel,
    DeviceRegistration,
    DeviceRemoval,
    DeviceStatus,
    EmailTaken,
    Missing,
    Notification,
    NotificationContent,
    NotificationStatus,
    PendingState,
    Platform,
    Progress,
    PushOutcome,
    PushRecord,
    PushTarget,
    ReadState,
    RecipientGroup,
    StoreError,
    TargetKind,
    Targets,
    User,
)
from owlmetry.store.schedules import Release, ScheduledState
from owlmetry.store.schema import latest_version, schema_sql
from owlmetry.store.sessions import Revocation
from owlmetry.store.store import Store

__all__ = [
    "ENQUEUE_AT_ONCE",
    "RECORDED_OUTCOMES",
    "ApiKey",
    "ChannelStatus",
    "Claim",
    "DatabaseUnavailable",
    "DeleteResult",
    "DeliveryEnd",
    "DeliveryStatus",
    "Device",
    "DeviceChannel",
    "DeviceRegistration",
    "DeviceRemoval",
    "DeviceStatus",
    "EmailTaken",
    "IdempotencyRecord",
    "Missing",
    "Notification",
    "NotificationContent",
    "NotificationStatus",
    "PendingState",
    "Platform",
    "Progress",
    "PushOutcome",
    "PushRecord",
    "PushTarget",
    "ReadState",
    "RecipientGroup",
    "Release",
    "Revocation",
    "ScheduledState",
    "Store",
    "StoreError",
    "TargetKind",
    "Targets",
    "User",
    "check_database_url",
    "open_store",
    "latest_version",
    "schema_sql",
    "sqlite_path",
]


SQLITE_PREFIX = "sqlite:///"


def check_database_url(url: str) -> str:
    """Return the engine name for `url`, or raise StoreError saying what a valid URL looks like."""
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise StoreError(
        f"unsupported database URL {url_without_password(url)!r}: use sqlite:///path/to/file.db "
        "or postgresql://user:password@host:port/database"
    )


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite database URL; None for PostgreSQL (StoreError for neither)."""
    return url[len(SQLITE_PREFIX):] if check_database_url(url) == "sqlite" else None


async def open_store(url: str) -> Store:
    """Connect to the database at `url`. The schema is not touched: call `migrate()` for that."""
    if (path := sqlite_path(url)) is not None:
        from owlmetry.store.sqlite import SQLiteEngine

        return Store(await SQLiteEngine.open(path))
    from owlmetry.store.postgres import PostgresEngine

    return Store(await PostgresEngine.open(url))
