"""The database: one async interface (`base.Store`) and its two backends.

`open_store(url)` picks the backend from the URL: `sqlite:///path` (aiosqlite, the embedded
default) or `postgresql://...` (asyncpg, production). This package is the only door to the
database. Its SQL lives in `queries` (what both engines share) and in each backend's module
(what one engine needs in its own dialect), and nowhere else.
"""

import functools
import hashlib
from importlib import resources
from pathlib import Path

from owlmetry.redact import url_without_password
from owlmetry.store.base import (
    ApiKey,
    Claim,
    DeleteOutcome,
    DeliveryEnd,
    Device,
    DeviceRegistration,
    EmailTaken,
    Notification,
    NotificationContent,
    Progress,
    PushRecord,
    PushTarget,
    Store,
    StoreError,
    User,
)

__all__ = [
    "ApiKey",
    "Claim",
    "DeleteOutcome",
    "DeliveryEnd",
    "Device",
    "DeviceRegistration",
    "EmailTaken",
    "Notification",
    "NotificationContent",
    "Progress",
    "PushRecord",
    "PushTarget",
    "Store",
    "StoreError",
    "User",
    "check_database_url",
    "open_store",
    "schema_digest",
    "schema_sql",
]


def schema_sql() -> str:
    """schema.sql: inside the package once installed (setup.py copies it), else at the checkout's top."""
    installed = resources.files("owlmetry").joinpath("schema.sql")
    if installed.is_file():
        return installed.read_text()
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text()


@functools.cache
def schema_digest() -> str:
    """Names the schema version: a database whose stored digest matches needs no migration."""
    return hashlib.sha256(schema_sql().encode()).hexdigest()


def check_database_url(url: str) -> str:
    """Return the backend name for `url`, or raise StoreError saying what a valid URL looks like."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise StoreError(
        f"unsupported database URL {url_without_password(url)!r}: use sqlite:///path/to/file.db "
        "or postgresql://user:password@host:port/database"
    )


async def open_store(url: str) -> Store:
    """Connect to the database at `url`. The schema is not touched: call `migrate()` for that."""
    if check_database_url(url) == "sqlite":
        from owlmetry.store.sqlite import SQLiteStore

        return await SQLiteStore.open(url[len("sqlite:///"):])
    from owlmetry.store.postgres import PostgresStore

    return await PostgresStore.open(url)
