"""Registrations and SQLite's one writer: a registration that comes while another one's batch
waits for the writer waits in the requests' queue too, so bulk work that queued between them
(answers, claims, an enqueue's chunk) goes after both, not between them. On a real SQLite file."""

import asyncio
import threading
import uuid

import pytest

from owlmetry.store import DeviceRegistration

T0 = 1_700_000_000_000


async def waiting_for_the_writer(store, bulk: bool, count: int) -> bool:
    """Until `count` writes of the kind wait for the writer; False when they never do."""
    for _ in range(1000):
        if len(store.engine._turns._waiting[bulk]) >= count:
            return True
        await asyncio.sleep(0)
    return False


async def test_a_registration_coming_meanwhile_goes_before_bulk_work_queued_earlier(store):
    if store.engine.name != "sqlite":
        pytest.skip("PostgreSQL: no single writer")
    owner = (await store.create_user(str(uuid.uuid4()), "owner@example.com", 1)).id
    release = threading.Event()
    devices_seen_by_bulk = []

    async def register(token: str) -> None:
        await store.register_device(str(uuid.uuid4()), owner, DeviceRegistration(
            "mobile_push", token, "production", None, None, None), T0)

    def bulk_work(run) -> None:
        devices_seen_by_bulk.append(run("SELECT count(*) FROM user_devices")[0][0])

    holder = asyncio.create_task(
        store.engine.in_one_step(lambda run: release.wait(30), bulk=True))
    while not store.engine._turns.busy:
        await asyncio.sleep(0)
    first = asyncio.create_task(register("ab" * 32))
    assert await waiting_for_the_writer(store, bulk=False, count=1)
    bulk = asyncio.create_task(store.engine.in_one_step(bulk_work, bulk=True))
    assert await waiting_for_the_writer(store, bulk=True, count=1)
    second = asyncio.create_task(register("cd" * 32))
    await waiting_for_the_writer(store, bulk=False, count=2)  # not before: it waited for `first`
    release.set()
    await asyncio.gather(holder, first, bulk, second)

    assert devices_seen_by_bulk == [2]
    assert len(await store.list_devices(owner)) == 2


async def test_sqlite_runs_one_registration_batch_unless_bulk_work_wants_the_writer(store):
    """SQLite: one batch at a time while its writer is free of bulk work (bigger batches), as
    many as allowed while bulk work holds it (PostgreSQL: always as many as allowed)."""
    engine = store.engine
    if engine.name == "postgresql":
        assert engine.request_batches(3) == 3
        return
    assert engine.request_batches(3) == 1
    async with engine.transaction(bulk=True):
        assert engine.request_batches(3) == 3
    assert engine.request_batches(3) == 1
