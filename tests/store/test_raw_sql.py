"""The raw-SQL door (`Store.execute`, `Store.execute_batch`) and the store's enum answers, on
both engines."""

import uuid

from owlmetry.store import (
    DeliveryStatus,
    Missing,
    NotificationContent,
    PushOutcome,
    PushRecord,
)


async def test_execute_takes_dollar_placeholders_and_returns_tuples(store):
    assert await store.execute("SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), $1", "a", 2) == [
        ("a", 2, "a")]
    await store.execute("INSERT INTO settings (key, value) VALUES ($1, $2)", "k", "v")
    assert await store.execute("SELECT value FROM settings WHERE key = $1", "k") == [("v",)]
    # Autocommit: what it wrote is what the store reads next.
    assert await store.setting("k", "other") == "v"


async def test_execute_batch_puts_the_batch_after_the_params(store):
    rows = [("k1", "v1"), ("k2", "v2")]
    await store.execute_batch(
        "WITH batch (key, value) AS ({batch}) "
        "INSERT INTO settings (key, value) SELECT key || $1, value FROM batch",
        ("text", "text"), rows, "-x")
    found = await store.execute_batch(
        "WITH batch (key) AS ({batch}) "
        "SELECT s.key, s.value FROM batch AS b JOIN settings AS s ON s.key = b.key "
        "ORDER BY s.key", ("text",), [("k1-x",), ("k2-x",), ("k3-x",)])
    assert found == [("k1-x", "v1"), ("k2-x", "v2")]
    assert await store.execute_batch("SELECT 1 FROM ({batch}) AS b", ("text",), []) == []


async def test_set_read_says_why_a_row_is_missing(store):
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)
    missing = str(uuid.uuid4())
    assert await store.set_read(user.id, missing, True, 2) is Missing.NOT_FOUND
    assert await store.set_read(str(uuid.uuid4()), missing, True, 2) is Missing.NO_USER


async def test_progress_and_claims_speak_in_enums(store):
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)
    await store.execute(
        "INSERT INTO user_devices (id, user_id, channel, token, environment, last_seen_at, "
        "created_at) VALUES ($1, $2, 'ios_push', 'aa', 'production', 1, 1)", "d1", user.id)
    (notification_id,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id)], NotificationContent("message", "hi"), ["ios_push"], 1)
    assert len(await store.claim_deliveries("owner", 1, 30_000, 10)) == 1
    await store.save_outcomes("owner", [PushRecord(notification_id, "d1", "ios_push",
                                                   PushOutcome.FAILED, 500, "boom")], [], 2)
    await store.execute("UPDATE notification_deliveries SET available_at = 0")
    (again,) = await store.claim_deliveries("owner", 3, 30_000, 10)
    assert again.earlier == {PushOutcome.FAILED: 1}
    assert all(type(key) is PushOutcome for key in again.earlier)
    progress = await store.progress([notification_id])
    assert progress.deliveries == {DeliveryStatus.PENDING: 1}
    assert all(type(key) is DeliveryStatus for key in progress.deliveries)
    assert progress.pushes == {PushOutcome.FAILED: 1} and not progress.done
