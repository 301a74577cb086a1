"""A producer's request as the database keeps it: its content once, however many recipients,
and its recipients written in chunks, each its own transaction, so that other writes get
through while a large request goes in. On a real SQLite file and a real PostgreSQL database."""

import asyncio
import threading
import uuid

import asyncpg
import pytest

from owlmetry.notify import dispatcher
from owlmetry.preferences import Defaults, merge, parse_patch
from owlmetry.store import (
    DatabaseUnavailable,
    DeviceRegistration,
    NotificationContent,
    ReadState,
    RecipientGroup,
    deliveries,
)

T0 = 1_800_000_000_000
CONTENT = NotificationContent("feedback.new", "New feedback", "b" * 4000, "/feedback/1",
                              {"feedback_id": "f" * 1000}, "team-1")


async def new_users(store, n: int) -> list[str]:
    return [(await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)).id
            for _ in range(n)]


def recipients(user_ids: list[str]) -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), user_id) for user_id in user_ids]


async def until(condition, what: str) -> None:
    """Wait for an event the test cannot be told of; a generous bound only ends a broken run."""
    for _ in range(3000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never happened: {what}")


async def writer_taken(store) -> None:
    """Until the enqueue started holds SQLite's writer (for its first chunk)."""
    for _ in range(1000):
        if store.engine._turns.busy:
            return
        await asyncio.sleep(0)
    pytest.fail("the enqueue never took the writer")


async def test_a_request_stores_its_content_once_for_all_its_recipients(store):
    user_ids = await new_users(store, 3)
    asked = recipients([*user_ids, str(uuid.uuid4())])  # the last one is no user
    ids = await store.enqueue_notifications(asked, CONTENT, ["mobile_push"], T0)

    assert ids == [notification_id for notification_id, _ in asked[:3]]
    # One copy of the 5 KB the producer sent, not one per recipient.
    assert await store.execute(
        "SELECT count(*), sum(length(body) + length(data)) FROM notification_contents") \
        == [(1, 4000 + len('{"feedback_id":""}') + 1000)]
    for (notification_id, user_id) in asked[:3]:
        (listed,) = await store.list_notifications(user_id, ReadState.ALL, None, None, 10)
        assert (listed.id, listed.type, listed.title, listed.body, listed.link,
                listed.team_id) == (notification_id, "feedback.new", "New feedback", "b" * 4000,
                                    "/feedback/1", "team-1")
    claims = await store.claim_deliveries("d1", T0, 30_000, 10)
    assert sorted(claim.notification_id for claim in claims) == sorted(ids)
    assert all(claim.content == CONTENT for claim in claims)


async def test_a_request_without_a_known_recipient_stores_no_content(store):
    assert await store.enqueue_notifications(recipients([str(uuid.uuid4())]), CONTENT,
                                             ["mobile_push"], T0) == []
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(0,)]


async def test_every_chunk_writes_its_recipients_whole_and_the_content_once(store):
    """35 recipients in chunks of 10, the first chunk of unknown users only (the content comes
    with the first row written); some with the inbox off for the type."""
    user_ids = await new_users(store, 25)
    asked = recipients([str(uuid.uuid4()) for _ in range(10)] + user_ids)
    groups = [RecipientGroup(("mobile_push", "email"), True, asked[:30]),
              RecipientGroup(("email",), False, asked[30:])]

    written = await store.enqueue_groups(groups, CONTENT, T0, chunk=10)

    assert written == {notification_id for notification_id, _ in asked[10:]}
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(1,)]
    assert await store.execute("SELECT count(DISTINCT content_id) FROM notifications") == [(1,)]
    assert sorted(await store.execute(
        "SELECT channel, count(*) FROM notification_deliveries GROUP BY channel")) \
        == [("email", 25), ("mobile_push", 20)]
    counts = [await store.unread_count(user_id) for user_id in user_ids]
    assert counts == [1] * 20 + [0] * 5


async def test_a_registration_during_a_large_enqueue_is_not_kept_waiting_for_all_of_it(store):
    """SQLite has one writer: a registration issued while a large enqueue holds it for its
    first chunk is written before the enqueue's last chunk, not after."""
    if store.engine.name != "sqlite":
        pytest.skip("PostgreSQL: a registration never waits for an enqueue (see the next test)")
    user_ids = await new_users(store, 50)
    (owner,) = await new_users(store, 1)
    enqueue = asyncio.create_task(store.enqueue_groups(
        [RecipientGroup(("mobile_push",), True, recipients(user_ids))], CONTENT, T0, chunk=10))
    await writer_taken(store)
    register = asyncio.create_task(store.register_device(str(uuid.uuid4()), owner,
        DeviceRegistration("mobile_push", "ab" * 32, "production", None, None, None), T0))

    done, _ = await asyncio.wait({enqueue, register}, return_when=asyncio.FIRST_COMPLETED)

    assert done == {register}
    assert len(await enqueue) == 50


async def test_the_first_chunks_commit_while_a_later_one_waits(store, database_url):
    """PostgreSQL: a transaction holding the unread count of a recipient of the last chunk
    holds up that chunk only; the first recipients are notified, and can mark it read,
    meanwhile. (In one transaction, nobody would see anything until the lock went.)"""
    if store.engine.name != "postgresql":
        pytest.skip("SQLite: no row locks (see the previous test)")
    user_ids = await new_users(store, 30)
    asked = recipients(user_ids)
    # Chunks go in notification id order.
    (_, first), (_, last) = min(asked), max(asked)
    await store.execute("INSERT INTO unread_counts (user_id, unread) VALUES ($1, 0)", last)
    blocker = await asyncpg.connect(database_url)
    try:
        held = blocker.transaction()
        await held.start()
        await blocker.execute("SELECT * FROM unread_counts WHERE user_id = $1 FOR UPDATE", last)
        enqueue = asyncio.create_task(store.enqueue_groups(
            [RecipientGroup(("mobile_push",), True, asked)], CONTENT, T0, chunk=10))

        async def first_notified() -> bool:
            return bool(await store.list_notifications(first, ReadState.ALL, None, None, 1))

        await until(first_notified, "the first chunk's recipients notified")
        (listed,) = await store.list_notifications(first, ReadState.ALL, None, None, 1)
        assert (await store.set_read(first, listed.id, True, T0 + 1)).read_at == T0 + 1
        assert not enqueue.done()
        await held.rollback()
    finally:
        await blocker.close()
    assert len(await enqueue) == 30
    assert [await store.unread_count(user_id) for user_id in (first, last)] == [0, 1]


async def test_a_registration_goes_before_bulk_work_already_waiting(store):
    """SQLite: a registration queued behind two pieces of bulk work (one under way, an enqueue's
    chunk waiting) waits for the one under way only."""
    if store.engine.name != "sqlite":
        pytest.skip("PostgreSQL: no single writer")
    user_ids = await new_users(store, 2)
    (owner,) = await new_users(store, 1)
    finished = []
    release = threading.Event()

    async def bulk_under_way() -> None:  # holds the writer's thread until released
        await store.engine.in_one_step(lambda run: release.wait(30), bulk=True)
        finished.append("bulk work under way")

    async def enqueue() -> None:
        await store.enqueue_groups(
            [RecipientGroup(("mobile_push",), True, recipients(user_ids))], CONTENT, T0)
        finished.append("enqueue")

    async def register() -> None:
        await store.register_device(str(uuid.uuid4()), owner, DeviceRegistration(
            "mobile_push", "cd" * 32, "production", None, None, None), T0)
        finished.append("registration")

    first = asyncio.create_task(bulk_under_way())
    await writer_taken(store)
    second = asyncio.create_task(enqueue())
    registration = asyncio.create_task(register())
    for _ in range(1000):  # until both wait for the writer
        if store.engine._turns._waiting[True] and store.engine._turns._waiting[False]:
            break
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second, registration)

    assert finished == ["bulk work under way", "registration", "enqueue"]


async def test_postgresql_plans_claims_on_the_queue_as_a_big_request_left_it(store, monkeypatch):
    # The claim's plan comes from the queue's statistics: if they still describe an empty
    # queue, each claim reads and sorts every due delivery. A big request refreshes them.
    if store.engine.name != "postgresql":
        pytest.skip("SQLite's planner reads no table statistics for the claim")
    monkeypatch.setattr(deliveries, "ANALYZE_AFTER", 300)
    await store.execute("ANALYZE notification_deliveries")  # an empty queue's statistics
    user_ids = [str(uuid.uuid4()) for _ in range(300)]
    await store.execute_batch(
        "WITH batch (id, email) AS ({batch}) "
        "INSERT INTO users (id, email, created_at) SELECT id, email, 1 FROM batch",
        ("text", "text"), [(user_id, f"{user_id}@example.com") for user_id in user_ids])

    await store.enqueue_notifications(recipients(user_ids), CONTENT, ["mobile_push"], T0)

    assert await store.execute(
        "SELECT reltuples FROM pg_class WHERE relname = 'notification_deliveries'") == [(300,)]


async def test_a_request_of_many_slices_writes_everyone_once_and_its_content_once(
        store, monkeypatch):
    """A producer's request read and written 4 users a slice, slices side by side once the
    content is in (PostgreSQL), the first slice of unknown users only."""
    monkeypatch.setattr(dispatcher, "ENQUEUE_SLICE", 4)
    user_ids = await new_users(store, 21)
    # Slices go in user order: these four, below every uuid4, make the first one.
    unknown = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    ids = await dispatcher.enqueue(store, user_ids + unknown, CONTENT, ["mobile_push"],
                                   Defaults())

    assert len(ids) == 21
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(1,)]
    assert sorted(await store.execute("SELECT user_id FROM notifications")) \
        == sorted((user_id,) for user_id in user_ids)
    assert await store.execute("SELECT count(*) FROM notification_deliveries") == [(21,)]
    assert [await store.unread_count(user_id) for user_id in user_ids] == [1] * 21


async def test_a_slice_is_written_while_the_next_ones_preferences_are_read(store, monkeypatch):
    """A producer's request of 3 slices: the next slice's preferences are read before this
    slice's write ends (one round trip on the way per slice, not two), and each recipient
    still gets what their own preferences choose, whichever slice they are in."""
    monkeypatch.setattr(dispatcher, "ENQUEUE_SLICE", 2)
    user_ids = sorted(await new_users(store, 6))  # slices go in user order
    no_push, no_inbox = user_ids[1], user_ids[4]  # the first and the third slice
    for user_id, types in ((no_push, {"feedback.new": {"mobile_push": False}}),
                           (no_inbox, {"feedback.new": {"in_app": False}})):
        patch = parse_patch({"notifications": {"types": types}})
        assert await store.update_preferences(user_id, lambda stored, p=patch: merge(stored, p))
    events = []
    read, write = store.preferences_of, store.enqueue_groups

    async def preferences_of(ids):
        events.append(("read", ids[0]))
        return await read(ids)

    async def enqueue_groups(groups, *args, **kwargs):
        first = min(user_id for group in groups for _, user_id in group.recipients)
        try:
            return await write(groups, *args, **kwargs)
        finally:
            events.append(("written", first))

    monkeypatch.setattr(store, "preferences_of", preferences_of)
    monkeypatch.setattr(store, "enqueue_groups", enqueue_groups)
    ids = await dispatcher.enqueue(store, user_ids, CONTENT, ["mobile_push"], Defaults())

    firsts = user_ids[::2]
    assert events == [("read", firsts[0]), ("read", firsts[1]), ("written", firsts[0]),
                      ("read", firsts[2]), ("written", firsts[1]), ("written", firsts[2])]
    assert len(ids) == 6
    pushed = {user_id for (user_id,) in await store.execute(
        "SELECT n.user_id FROM notification_deliveries AS d "
        "JOIN notifications AS n ON n.id = d.notification_id")}
    assert pushed == set(user_ids) - {no_push}
    assert [await store.unread_count(user_id) for user_id in user_ids] \
        == [0 if user_id == no_inbox else 1 for user_id in user_ids]


async def test_a_failed_write_leaves_no_read_of_the_next_slice_running(store, monkeypatch):
    monkeypatch.setattr(dispatcher, "ENQUEUE_SLICE", 2)
    user_ids = await new_users(store, 6)

    async def enqueue_groups(*args, **kwargs):
        raise DatabaseUnavailable("unreachable", "the test's")

    monkeypatch.setattr(store, "enqueue_groups", enqueue_groups)
    with pytest.raises(DatabaseUnavailable):
        await dispatcher.enqueue(store, user_ids, CONTENT, ["mobile_push"], Defaults())

    assert [task for task in asyncio.all_tasks()
            if "preferences_of" in repr(task.get_coro())] == []
