"""The retention's clean-up by dates, on a real SQLite file and a real PostgreSQL database:
what is soft-deleted, removed (with deliveries and push records) and kept, login codes pruned,
the bounded batches, and one PostgreSQL process at a time."""

import asyncio
import dataclasses
import uuid

import pytest

from owlmetry.login_codes import WINDOW_MS
from owlmetry.retention import DAY_MS, Cleaned, clean_up
from owlmetry.store import NotificationContent, ReadState, open_store

NOW = 1_800_000_000_000
CONTENT = NotificationContent("feedback.new", "Title")


async def new_user(store) -> str:
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)
    return user.id


async def notification(store, user_id: str, created_at: int, *, read_at: int | None = None,
                       deleted_at: int | None = None) -> str:
    """One notification of the user's, with a delivery and a push record, read and deleted
    when told: through the store's own methods, at those times."""
    (notification_id,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user_id)], CONTENT, ["ios_push"], created_at)
    await store.execute(
        "INSERT INTO notification_pushes (notification_id, device_id, channel, outcome, "
        "answered_at) VALUES ($1, $2, 'ios_push', 'delivered', $3)",
        notification_id, str(uuid.uuid4()), created_at)
    if read_at is not None:
        await store.set_read(user_id, notification_id, True, read_at)
    if deleted_at is not None:
        assert await store.delete_notification(user_id, notification_id, deleted_at) == "deleted"
    return notification_id


async def state(store, notification_id: str) -> tuple | None:
    """(read_at, deleted_at, deliveries, pushes) of a notification; None once removed."""
    rows = await store.execute(
        "SELECT read_at, deleted_at FROM notifications WHERE id = $1", notification_id)
    ((deliveries,),) = await store.execute(
        "SELECT count(*) FROM notification_deliveries WHERE notification_id = $1",
        notification_id)
    ((pushes,),) = await store.execute(
        "SELECT count(*) FROM notification_pushes WHERE notification_id = $1", notification_id)
    if not rows:
        assert (deliveries, pushes) == (0, 0)
        return None
    return (*rows[0], deliveries, pushes)


async def add_login_code(store, email: str, made_at: int) -> None:
    """A code as a send-code with sign-up on keeps it (without the client address's count)."""
    await store.ask_login_code(email, "send:test", str(uuid.uuid4()), "h", "sealed", made_at,
                               made_at + 600_000, signup=True, window_ms=900_000, limit=10,
                               resend_before=made_at, max_mails=3)
    await store.execute("DELETE FROM login_limits")


def days_ago(days: float) -> int:
    return NOW - int(days * DAY_MS)


async def test_read_a_month_ago_is_soft_deleted_and_unread_never_expires(store, config):
    user_id = await new_user(store)
    old_read = await notification(store, user_id, days_ago(40), read_at=days_ago(31))
    recent_read = await notification(store, user_id, days_ago(40), read_at=days_ago(29))
    old_unread = await notification(store, user_id, days_ago(200))

    assert await clean_up(store, config, NOW) == Cleaned(soft_deleted=1)

    assert await state(store, old_read) == (days_ago(31), NOW, 1, 1)
    assert await state(store, recent_read) == (days_ago(29), None, 1, 1)
    assert await state(store, old_unread) == (None, None, 1, 1)
    assert await store.unread_count(user_id) == 1
    # Soft-deleted: gone from the inbox.
    listed = await store.list_notifications(user_id, "all", None, None, 10)
    assert {n.id for n in listed} == {recent_read, old_unread}


async def test_deleted_three_months_ago_is_removed_with_deliveries_and_push_records(
        store, config):
    user_id = await new_user(store)
    old = await notification(store, user_id, days_ago(100), deleted_at=days_ago(91))
    old_read = await notification(store, user_id, days_ago(100), read_at=days_ago(95),
                                  deleted_at=days_ago(92))
    recent = await notification(store, user_id, days_ago(100), deleted_at=days_ago(89))

    assert await clean_up(store, config, NOW) == Cleaned(removed=2)

    assert await state(store, old) is None
    assert await state(store, old_read) is None
    assert await state(store, recent) == (None, days_ago(89), 1, 1)
    assert await store.unread_count(user_id) == 0


async def test_zero_days_keeps_them(store, config):
    user_id = await new_user(store)
    read = await notification(store, user_id, days_ago(400), read_at=days_ago(399))
    deleted = await notification(store, user_id, days_ago(400), deleted_at=days_ago(399))
    keep = dataclasses.replace(config, retention_read_days=0, retention_deleted_days=0)

    assert await clean_up(store, keep, NOW) == Cleaned()

    assert await state(store, read) == (days_ago(399), None, 1, 1)
    assert await state(store, deleted) == (None, days_ago(399), 1, 1)


async def test_login_codes_past_the_window_are_pruned(store, config):
    async def add(email: str, made_at: int) -> None:
        await add_login_code(store, email, made_at)
    await add("recent@example.com", NOW - 1_000)
    await add("old@example.com", NOW - WINDOW_MS - 1)  # after the recent one: it prunes nothing

    assert await clean_up(store, config, NOW) == Cleaned(login_codes=1)

    assert await store.execute("SELECT email FROM login_codes") == [("recent@example.com",)]


async def test_batches_are_bounded_and_end_the_same(store, config, monkeypatch):
    user_id = await new_user(store)
    for _ in range(5):
        await notification(store, user_id, days_ago(200), read_at=days_ago(100))
        await notification(store, user_id, days_ago(200), deleted_at=days_ago(100))
    for n in range(5):
        await add_login_code(store, f"{n}@example.com", days_ago(1))
    statements = {"soft_delete_read": 0, "remove_deleted": 0, "prune_login_codes": 0}
    for name in statements:
        method = getattr(store, name)

        async def counted(*args, name=name, method=method):
            statements[name] += 1
            return await method(*args)
        monkeypatch.setattr(store, name, counted)

    cleaned = await clean_up(store, config, NOW, batch_size=2, pause_s=0)

    # 5 rows, 2 at a time: 2 + 2 + 1. The five soft-deleted now stay (deleted today).
    assert statements == {"soft_delete_read": 3, "remove_deleted": 3, "prune_login_codes": 3}
    assert cleaned == Cleaned(soft_deleted=5, removed=5, login_codes=5)
    assert await store.execute("SELECT count(*) FROM notifications") == [(5,)]
    assert await store.execute("SELECT count(*) FROM login_codes") == [(0,)]


async def test_a_content_goes_with_the_last_recipient_row_that_points_at_it(store, config):
    """One request to three users: its content is stored once, and stays until the last of
    their rows is removed (another request's content is not touched)."""
    users = [await new_user(store) for _ in range(3)]
    asked = [(str(uuid.uuid4()), user_id) for user_id in users]
    await store.enqueue_notifications(asked, CONTENT, ["ios_push"], days_ago(200))
    other = await notification(store, users[0], days_ago(200))

    async def contents() -> int:
        return (await store.execute("SELECT count(*) FROM notification_contents"))[0][0]

    for (notification_id, user_id) in asked[:2]:
        await store.delete_notification(user_id, notification_id, days_ago(100))
    assert await clean_up(store, config, NOW, batch_size=1, pause_s=0) == Cleaned(removed=2)
    assert await contents() == 2
    (listed,) = await store.list_notifications(users[2], ReadState.ALL, None, None, 10)
    assert (listed.id, listed.title) == (asked[2][0], CONTENT.title)

    await store.delete_notification(users[2], asked[2][0], days_ago(100))
    assert await clean_up(store, config, NOW) == Cleaned(removed=1)
    assert await contents() == 1
    assert await state(store, other) == (None, None, 1, 1)
    (listed,) = await store.list_notifications(users[0], ReadState.ALL, None, None, 10)
    assert listed.id == other


async def test_a_run_asked_to_stop_ends_after_its_batch(store, config):
    user_id = await new_user(store)
    for _ in range(3):
        await notification(store, user_id, days_ago(200), read_at=days_ago(100))
    stopping = asyncio.Event()
    stopping.set()
    assert await clean_up(store, config, NOW, batch_size=1, stopping=stopping) == Cleaned()


async def test_one_postgresql_process_at_a_time(store, config, database_url):
    if store.engine.name != "postgresql":
        pytest.skip("SQLite: one server process per database file")
    user_id = await new_user(store)
    await notification(store, user_id, days_ago(200), read_at=days_ago(100))
    other = await open_store(database_url)
    try:
        async with store.retention_lock() as ours:
            assert ours
            # Another process (its own connections) finds the run taken and does nothing.
            assert await clean_up(other, config, NOW) is None
            assert await state(store, (await store.execute(
                "SELECT id FROM notifications"))[0][0]) == (days_ago(100), None, 1, 1)
        assert await clean_up(other, config, NOW) == Cleaned(soft_deleted=1)
    finally:
        await other.close()
