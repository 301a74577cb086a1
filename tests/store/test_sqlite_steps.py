"""SQLite's bulk writes in one step: an enqueue's chunk and a batch of answers are written whole
in the writer's thread, so the one writer is never held while the event loop is busy elsewhere
(a registration waiting for it waited for every turn of the loop between the statements). On a
real SQLite file, watched through a connection of its own."""

import asyncio
import sqlite3
import time
import uuid

import pytest

from owlmetry.store import (
    DeliveryEnd,
    DeliveryStatus,
    DeviceRegistration,
    NotificationContent,
    PushOutcome,
    PushRecord,
    open_store,
    sqlite,
)

WATCH_S = 30  # the most the blocked loop waits for the commit; it comes in ms


async def new_store(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/owlmetry.db")
    await store.migrate()
    return store


def count_when_committed(path: str, sql: str, expected: int) -> int:
    """Polls `sql` on a connection of its own (the event loop stays blocked meanwhile) until it
    counts `expected` rows, or WATCH_S pass; the last count."""
    watcher = sqlite3.connect(path)
    try:
        deadline = time.monotonic() + WATCH_S
        while True:
            (count,) = watcher.execute(sql).fetchone()
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.005)
    finally:
        watcher.close()


async def test_an_enqueue_chunk_commits_whole_without_the_event_loop(tmp_path):
    store = await new_store(tmp_path)
    try:
        users = [(await store.create_user(str(uuid.uuid4()), f"u{i}@example.com", 1)).id
                 for i in range(20)]
        chunk = asyncio.create_task(store.enqueue_notifications(
            [(str(uuid.uuid4()), user_id) for user_id in users],
            NotificationContent("t", "Title"), ["ios_push", "in_app"], 1))
        while not store.engine._turns.busy:  # until the chunk holds the writer
            await asyncio.sleep(0)
        # The loop is blocked from here on: only the writer's thread can finish the chunk.
        deliveries = count_when_committed(str(tmp_path / "owlmetry.db"),
                                          "SELECT count(*) FROM notification_deliveries", 40)
        assert deliveries == 40
        assert len(await chunk) == 20
        assert await store.unread_count(users[0]) == 1
    finally:
        await store.close()


async def test_answers_with_dead_tokens_and_retries_commit_whole_without_the_event_loop(
        tmp_path):
    """The answers' write that also deletes a dead token's device, records its audit row and a
    device waiting for a retry: one step too, not a statement per turn of the loop."""
    store = await new_store(tmp_path)
    try:
        user = await store.create_user(str(uuid.uuid4()), "dead@example.com", 1)
        devices = [await store.register_device(
            str(uuid.uuid4()), user.id,
            DeviceRegistration("mobile_push", f"{n:064x}", "production", None, None, None), 1)
            for n in range(3)]
        (notification_id,) = await store.enqueue_notifications(
            [(str(uuid.uuid4()), user.id)], NotificationContent("t", "T"), ["mobile_push"], 1)
        records = [PushRecord(notification_id, device.id, "mobile_push", outcome, status,
                              None, None, "ios", "production", None, None, 2)
                   for device, outcome, status in zip(devices, (
                       PushOutcome.DELIVERED, PushOutcome.REMOVED, PushOutcome.RETRY),
                       (200, 410, 503))]
        end = DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.PENDING, "503", 10)
        write = asyncio.create_task(store.save_outcomes("d1", records, [end], 3))
        while not store.engine._turns.busy:  # until the write holds the writer
            await asyncio.sleep(0)
        # The loop is blocked from here on: only the writer's thread can finish the write.
        path = str(tmp_path / "owlmetry.db")
        assert count_when_committed(path, "SELECT count(*) FROM device_removals", 1) == 1
        assert count_when_committed(path, "SELECT count(*) FROM notification_push_retries", 1) == 1
        assert [r.outcome for r in await write] == ["delivered", "removed"]
        assert len(await store.list_devices(user.id)) == 2
    finally:
        await store.close()


async def test_a_step_that_fails_writes_nothing_and_frees_the_writer(tmp_path):
    store = await new_store(tmp_path)
    try:
        def half_then_fail(run):
            run("INSERT INTO users (id, email, created_at) VALUES ($1, $2, 1)",
                str(uuid.uuid4()), "half@example.com")
            raise ValueError("the body failed after its first statement")

        with pytest.raises(ValueError):
            await store.engine.in_one_step(half_then_fail, bulk=True)
        assert await store.user_by_email("half@example.com") is None
        # The writer is free and out of the transaction: the next write commits.
        user = await store.create_user(str(uuid.uuid4()), "next@example.com", 1)
        assert (await store.user_by_email("next@example.com")).id == user.id
    finally:
        await store.close()



async def test_the_wal_is_checkpointed_in_the_background(tmp_path, monkeypatch):
    """What is written reaches the database file itself within a checkpoint period, without a
    write that pays for it: the writer's own checkpoint waits for 16,000 pages, which one
    user's row is far from."""
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY_S", 0.05)
    store = await new_store(tmp_path)
    try:
        marker = f"checkpointed-{uuid.uuid4().hex}@example.com".encode()
        await store.create_user(str(uuid.uuid4()), marker.decode(), 1)
        database = tmp_path / "owlmetry.db"
        for _ in range(600):
            if marker in database.read_bytes():
                break
            await asyncio.sleep(0.05)
        assert marker in database.read_bytes()
    finally:
        await store.close()
