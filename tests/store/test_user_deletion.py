"""A user's deletion (`Store.delete_user`) on a real SQLite file and a real PostgreSQL database:
every row of theirs goes, nobody else's, now that the inbox has no foreign keys to cascade
(migration 14); and on PostgreSQL, a deletion racing an enqueue's chunk leaves nothing behind."""

import asyncio
import uuid

import pytest

from owlmetry.store import DeviceRegistration, NotificationContent, PushRecord, RecipientGroup
from owlmetry.store.deliveries import (
    DELIVERY_TYPES,
    INBOX_ROW_TYPES,
    content_fields,
    enqueue_in_one,
)

NOW = 1_800_000_000_000
CONTENT = NotificationContent("feedback.new", "Title")

# Every table that holds rows of a user's, and the column that names the user or their rows.
OF_USER = {
    "users": "id",
    "user_devices": "user_id",
    "notifications": "user_id",
    "unread_counts": "user_id",
    "scheduled_recipients": "user_id",
}
OF_NOTIFICATIONS = ("notification_deliveries", "notification_pushes",
                    "notification_push_retries")


async def new_user(store) -> str:
    return (await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)).id


async def rows_of(store, user_id: str, notification_ids: list[str]) -> dict[str, int]:
    counts = {}
    for table, column in OF_USER.items():
        ((counts[table],),) = await store.execute(
            f"SELECT count(*) FROM {table} WHERE {column} = $1", user_id)
    for table in OF_NOTIFICATIONS:
        counts[table] = sum([(await store.execute(
            f"SELECT count(*) FROM {table} WHERE notification_id = $1", notification_id))[0][0]
            for notification_id in notification_ids])
    return counts


async def test_deleting_a_user_removes_every_row_of_theirs_and_nothing_of_others(store):
    gone, stays = await new_user(store), await new_user(store)
    for user_id, token in ((gone, "a1" * 32), (stays, "b2" * 32)):
        await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
            "mobile_push", token, "production", None, None, None), NOW)
    # One request to both (a shared content), one to the deleted user alone, listed and muted.
    both = [(str(uuid.uuid4()), gone), (str(uuid.uuid4()), stays)]
    await store.enqueue_notifications(both, CONTENT, ["mobile_push"], NOW)
    own = [(str(uuid.uuid4()), gone), (str(uuid.uuid4()), gone)]
    await store.enqueue_groups([RecipientGroup(("mobile_push",), True, own[:1]),
                                RecipientGroup(("mobile_push",), False, own[1:])],
                               NotificationContent("issue.new", "Own"), NOW)
    gone_ids = [both[0][0], own[0][0], own[1][0]]
    claims = await store.claim_deliveries("me", NOW, 30_000, 10)
    await store.save_outcomes("me", [
        PushRecord(c.notification_id, str(uuid.uuid4()), c.channel,
                   "retry" if c.notification_id == own[0][0] else "delivered", 200, None)
        for c in claims], [], NOW)
    await store.schedule(str(uuid.uuid4()), CONTENT, [(str(uuid.uuid4()), gone),
                                                      (str(uuid.uuid4()), stays)], NOW + 1, NOW)
    before_gone = await rows_of(store, gone, gone_ids)
    assert all(before_gone.values()), before_gone
    before_stays = await rows_of(store, stays, [both[1][0]])

    assert await store.delete_user(gone)
    assert set((await rows_of(store, gone, gone_ids)).values()) == {0}
    assert await rows_of(store, stays, [both[1][0]]) == before_stays
    assert await store.unread_count(stays) == 1
    # The shared content stays with its other recipient; the deleted user's own goes.
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(2,)]
    assert not await store.delete_user(gone)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_user_deleted_while_a_chunk_enqueues_for_them_is_waited_for(store):
    """The chunk locks its users' rows: the deletion waits for it, then takes what it wrote."""
    user, other = await new_user(store), await new_user(store)
    engine, fields = store.engine, content_fields(CONTENT)
    first = 4 + len(fields)
    statement = enqueue_in_one(engine.batch(INBOX_ROW_TYPES, first),
                               engine.batch(DELIVERY_TYPES, first + len(INBOX_ROW_TYPES)))
    rows = [(str(uuid.uuid4()), user, None), (str(uuid.uuid4()), other, None)]
    ids = [row[0] for row in rows]
    async with engine.transaction() as run:  # the chunk, its commit held back
        await run(statement, str(uuid.uuid4()), NOW, *fields, True,
                  *engine.batch_args(rows, len(INBOX_ROW_TYPES)),
                  *engine.batch_args([(i, "mobile_push") for i in ids], len(DELIVERY_TYPES)))
        deletion = asyncio.create_task(store.delete_user(user))
        await asyncio.sleep(0.3)
        assert not deletion.done()
    assert await deletion
    assert set((await rows_of(store, user, ids[:1])).values()) == {0}
    assert await store.unread_count(other) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_chunk_after_a_deletion_skips_the_user(store):
    """A chunk that meets a deletion under way waits for it and skips the user it deleted."""
    user, other = await new_user(store), await new_user(store)
    recipients = [(str(uuid.uuid4()), user), (str(uuid.uuid4()), other)]
    async with store.engine.transaction() as run:  # a deletion, its commit held back
        await run("DELETE FROM users WHERE id = $1", user)
        enqueue = asyncio.create_task(
            store.enqueue_notifications(recipients, CONTENT, ["mobile_push"], NOW))
        await asyncio.sleep(0.3)
        assert not enqueue.done()
    assert await enqueue == [recipients[1][0]]
    assert set((await rows_of(store, user, [recipients[0][0]])).values()) == {0}
