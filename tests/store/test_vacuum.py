"""Vacuuming the registry's dead rows (`Store.vacuum_overgrown` and the job inside `serve`): on
PostgreSQL a table whose evicted devices outgrew the threshold is vacuumed, its live devices
untouched; on SQLite there is nothing to vacuum."""

import asyncio
import time
import uuid

import asyncpg
import pytest

from owlmetry.http.context import STORE
from owlmetry.store import DeviceRegistration
from owlmetry.store.vacuum import MIN_DEAD_ROWS
from owlmetry.vacuuming import EVERY_S
from tests.conftest import Users
from tests.store.test_device_cap import ids, new_user

STATISTICS = """SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables
                WHERE relname = 'user_devices' AND schemaname = current_schema()"""


def registration(n: int) -> DeviceRegistration:
    return DeviceRegistration("ios_push", f"{n:064x}", "production", None, None, None)


async def without_autovacuum(store) -> None:
    """On PostgreSQL, keep autovacuum off the registry, so the vacuums counted are the store's
    (the test cluster's autovacuum would take a table of 60 dead rows too, at any moment)."""
    if store.engine.name == "postgresql":
        await store.execute("ALTER TABLE user_devices SET (autovacuum_enabled = false)")


async def evict(store, user_id: str, count: int) -> str:
    """Register `count` + 1 new tokens one after another for a user with a cap of 1: `count`
    evictions. The id of the last device, the one the user keeps."""
    store.limit_devices(1)
    for n in range(count + 1):
        device = await store.register_device(str(uuid.uuid4()), user_id, registration(n), 1000 + n)
    return device.id


async def eventually(check, timeout_s: float = 30.0):
    """`await check()` until it answers something true (a backend that goes idle reports its
    counts within PostgreSQL's 10 s); that answer."""
    deadline = time.monotonic() + timeout_s
    while not (answer := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return answer


async def test_a_table_past_its_dead_rows_threshold_is_vacuumed_and_keeps_its_devices(store):
    await without_autovacuum(store)
    user_id = await new_user(store)
    kept = await evict(store, user_id, 60)

    if store.engine.name == "sqlite":  # deleted rows' room is reused at once
        assert await store.vacuum_overgrown(min_dead_rows=0, dead_fraction=0) == []
    else:
        assert await store.vacuum_overgrown() == []  # 60 dead rows: under the default
        assert await eventually(
            lambda: store.vacuum_overgrown(min_dead_rows=50, dead_fraction=0)) == ["user_devices"]
        [(dead, vacuums)] = await store.execute(STATISTICS)
        assert (dead, vacuums) == (0, 1)
    assert await ids(store, user_id) == [kept]


async def test_the_job_inside_serve_vacuums_the_registry_after_many_evictions(
        client, database_url, caplog):
    store = client.app[STORE]
    await without_autovacuum(store)
    user_id, _ = await Users(client.app).create()
    kept = await evict(store, user_id, MIN_DEAD_ROWS + 100)

    if database_url.startswith("postgresql"):
        async def vacuumed():
            [(dead, vacuums)] = await store.execute(STATISTICS)
            return vacuums >= 1 and dead < MIN_DEAD_ROWS
        assert await eventually(vacuumed)
    else:
        await asyncio.sleep(2 * EVERY_S)  # it looked twice, and had nothing to do
    assert await ids(store, user_id) == [kept]
    assert not [r for r in caplog.records if r.name == "owlmetry.vacuum" and r.levelno >= 30]


async def test_a_table_another_process_is_vacuuming_is_skipped_not_waited_for(store, database_url):
    if store.engine.name == "sqlite":
        pytest.skip("SQLite has no vacuum to skip")
    await without_autovacuum(store)
    user_id = await new_user(store)
    kept = await evict(store, user_id, 60)
    async def dead_rows():
        [(dead, _)] = await store.execute(STATISTICS)
        return dead >= 50
    await eventually(dead_rows)
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            # What a VACUUM holds (autovacuum's, another server's): VACUUM's own lock mode.
            await other.execute("LOCK TABLE user_devices IN SHARE UPDATE EXCLUSIVE MODE")
            async with asyncio.timeout(5):
                assert await store.vacuum_overgrown(min_dead_rows=50, dead_fraction=0) == [
                    "user_devices"]
            [(dead, vacuums)] = await store.execute(STATISTICS)
            assert vacuums == 0 and dead >= 50
    finally:
        await other.close()

    assert await store.vacuum_overgrown(min_dead_rows=50, dead_fraction=0) == ["user_devices"]
    [(dead, vacuums)] = await store.execute(STATISTICS)
    assert (dead, vacuums) == (0, 1)
    assert await ids(store, user_id) == [kept]
