"""PostgreSQL's plans for a fan-out's statements on the inbox: every claimed notification is
looked up by its key, never found by reading the whole table, whatever the table's size and
statistics. (A sequential scan per claim and per write of answers made PostgreSQL's cost per
device grow with the inbox.) SQLite's plans are checked in test_unread_counter.py."""

import uuid

import pytest

from owlmetry.store import (
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    PushOutcome,
    PushRecord,
    TargetKind,
    deliveries,
)

T0 = 1_800_000_000_000
USERS = 2_000
CLAIM = 500


@pytest.fixture
async def inbox(store):
    """An inbox of USERS notifications (a device each) whose statistics were taken while it was
    empty; the ids of CLAIM of them."""
    if store.engine.name != "postgresql":
        pytest.skip("SQLite's plans read no table statistics")
    await store.execute("ANALYZE notifications")
    users = [str(uuid.uuid4()) for _ in range(USERS)]
    await store.execute_batch(
        "WITH batch (id, email) AS ({batch}) "
        "INSERT INTO users (id, email, created_at) SELECT id, email, 1 FROM batch",
        ("text", "text"), [(user_id, f"{user_id}@example.com") for user_id in users])
    await store.execute_batch(
        "WITH batch (id, user_id, token) AS ({batch}) "
        "INSERT INTO user_devices (id, user_id, channel, platform, token, environment, "
        "last_seen_at, created_at) "
        "SELECT id, user_id, 'ios_push', 'ios', token, 'production', 1, 1 FROM batch",
        ("text", "text", "text"),
        [(str(uuid.uuid4()), user_id, f"{i:064x}") for i, user_id in enumerate(users)])
    asked = [(str(uuid.uuid4()), user_id) for user_id in users]
    await store.enqueue_notifications(asked, NotificationContent("t", "hello"), ["mobile_push"],
                                      T0)
    return [notification_id for notification_id, _ in asked[:CLAIM]]


async def plan_of(store, statement: str, *params) -> str:
    return "\n".join(row[0] for row in await store.execute("EXPLAIN " + statement, *params))


def reads_whole_table(plan: str) -> bool:
    return "Seq Scan on notifications" in plan


async def test_a_claims_reads_look_each_notification_up_by_key(store, inbox):
    engine, ids = store.engine, [(notification_id,) for notification_id in inbox]
    content = await plan_of(store, *engine.batch_call(
        deliveries.CLAIMED_NOTIFICATIONS["postgresql"], ("text",), ids, ()))
    targets = await plan_of(store, *engine.batch_call(
        deliveries.targets_statement("postgresql", TargetKind.DEVICES, False), ("text",), ids,
        (["ios_push", "mobile_push"],)))

    assert "notifications_pkey" in content and not reads_whole_table(content), content
    assert "notifications_pkey" in targets and not reads_whole_table(targets), targets


async def test_answers_are_written_with_each_notification_looked_up_by_key(store, inbox):
    engine = store.engine
    pushes = [PushRecord(notification_id, str(uuid.uuid4()), "mobile_push",
                         PushOutcome.DELIVERED, 200, None) for notification_id in inbox]
    ends = [DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.SENT, None,
                        outcomes=(1, 0, 0, 0)) for notification_id in inbox]
    plan = await plan_of(store, *deliveries.record_answers_call(engine, "d1", pushes, ends, T0))

    assert "notifications_pkey" in plan and not reads_whole_table(plan), plan


async def test_answers_with_retries_and_removals_look_each_row_up_by_key(store, inbox):
    """A write of answers with waiting devices and removed ones in it is still one statement
    whose notifications and deliveries are each found by key (the removal rows are the
    store's own, from `removal_rows`)."""
    engine = store.engine
    pushes = [PushRecord(notification_id, str(uuid.uuid4()), "mobile_push",
                         PushOutcome.DELIVERED, 200, None) for notification_id in inbox]
    retries = [PushRecord(notification_id, str(uuid.uuid4()), "mobile_push",
                          PushOutcome.RETRY, 503, "ServiceUnavailable", None, "ios",
                          "production") for notification_id in inbox]
    ends = [DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.SENT, None,
                        outcomes=(1, 0, 0, 0)) for notification_id in inbox]
    removals = [(str(uuid.uuid4()), str(uuid.uuid4()), "ios_push", "ios", "production",
                 "abcdefgh…", notification_id, 410, "Unregistered", T0, T0)
                for notification_id in inbox]
    await store.execute("ANALYZE notification_deliveries")
    plan = await plan_of(store, *deliveries.record_answers_call(
        engine, "d1", pushes, ends, T0, retries, removals))

    assert "notifications_pkey" in plan and not reads_whole_table(plan), plan
    assert "notification_deliveries_pkey" in plan, plan
    assert "Seq Scan on notification_deliveries" not in plan, plan
