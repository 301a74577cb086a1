"""Scheduled sends in the store and the release loop, on both backends: a release cut short is
resumed once its lease lapses and writes only what is missing; two releases at once write each
notification once; a cancel and a claim racing never both win."""

import asyncio
import uuid

from owlmetry.clock import now_ms
from owlmetry.notify.dispatcher import Dispatcher, enqueue_slices
from owlmetry.notify.releaser import Releaser, schedule
from owlmetry.store import NotificationContent
from tests.provider_mocks import unconfigured_push

CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote", "/f/1",
                              {"feedback_id": "f1"})
LEASE_MS = 30_000


async def make_users(store, count: int) -> list[str]:
    return [(await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                     now_ms())).id for _ in range(count)]


async def inbox_rows(store) -> list[tuple]:
    return await store.execute("SELECT id, user_id FROM notifications ORDER BY id")


async def test_a_release_cut_short_is_resumed_once_its_lease_lapses_and_writes_the_rest(store):
    dispatcher = Dispatcher(store, {"mobile_push": unconfigured_push()})  # never started
    users = await make_users(store, 3)
    now = now_ms()
    ids = await schedule(store, users, CONTENT, now + 1000, now)
    assert len(ids) == 3 and await inbox_rows(store) == []

    # The first release claims the send and writes one recipient, then its process dies.
    (content_id,) = await store.claim_scheduled("first", now + 1000, LEASE_MS, 10)
    release = await store.scheduled_release(content_id)
    first = release.recipients[:1]
    await enqueue_slices(store, [first], release.content, ["mobile_push"], dispatcher.defaults,
                         now, content_id, content_stored=True)
    # Within its lease nobody takes it again.
    second = Releaser(store, dispatcher, lease_ms=LEASE_MS, clock=lambda: now + 2000)
    assert await second.release_due() == 0

    later = Releaser(store, dispatcher, lease_ms=LEASE_MS, clock=lambda: now + 1000 + LEASE_MS)
    assert await later.release_due() == 1
    assert sorted(await inbox_rows(store)) == sorted(zip(ids, users))
    # One delivery and one unread notification each: the first recipient's were not written
    # again.
    assert await store.execute(
        "SELECT notification_id, count(*) FROM notification_deliveries GROUP BY notification_id "
        "HAVING count(*) > 1") == []
    assert await store.execute("SELECT count(*) FROM notification_deliveries") == [(3,)]
    for user_id in users:
        assert await store.unread_count(user_id) == 1
    # One content for the request, shared by every row.
    assert await store.execute("SELECT count(DISTINCT content_id) FROM notifications") == [(1,)]
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(1,)]
    # The first release, back from the dead, cannot end what it no longer holds.
    assert not await store.end_scheduled("first", content_id, now + 1000 + LEASE_MS)
    assert await store.execute("SELECT claimed_by FROM scheduled_sends") == [(later.owner,)]


async def test_two_releases_at_once_write_each_notification_once(store):
    dispatcher = Dispatcher(store, {"mobile_push": unconfigured_push()})
    users = await make_users(store, 40)
    now = now_ms()
    for start in range(0, 40, 4):  # ten sends of four recipients
        await schedule(store, users[start:start + 4], CONTENT, now, now)
    releasers = [Releaser(store, dispatcher, clock=lambda: now) for _ in range(3)]
    counts = await asyncio.gather(*(releaser.release_due() for releaser in releasers))
    assert sum(counts) == 10
    assert len(await inbox_rows(store)) == 40
    assert await store.execute("SELECT count(*) FROM notification_deliveries") == [(40,)]
    for user_id in users:
        assert await store.unread_count(user_id) == 1


async def test_a_cancel_and_a_release_racing_never_both_win(store):
    """Whichever goes first, a notification cancelled is never among what the release reads,
    and one the release read is never said to be cancelled."""
    users = await make_users(store, 2)
    now = now_ms()

    async def claim_and_read():
        # PostgreSQL: while the cancel holds the send's row, a claim skips it.
        while not (claimed := await store.claim_scheduled("releaser", now, LEASE_MS, 10)):
            await asyncio.sleep(0.005)
        (content_id,) = claimed
        return content_id, await store.scheduled_release(content_id)

    for _ in range(15):
        ids = await schedule(store, users, CONTENT, now, now)
        state, (content_id, release) = await asyncio.gather(
            store.cancel_scheduled(ids[0], now), claim_and_read())
        released = {notification_id for notification_id, _ in release.recipients}
        if state.cancelled_at is not None:
            assert not state.started and released == {ids[1]}
        else:
            assert state.started and released == set(ids)
        assert await store.end_scheduled("releaser", content_id, now)


async def test_a_user_deleted_before_the_time_is_skipped_and_their_id_is_unknown(store):
    dispatcher = Dispatcher(store, {"mobile_push": unconfigured_push()})
    kept, deleted = await make_users(store, 2)
    now = now_ms()
    ids = await schedule(store, [kept, deleted], CONTENT, now, now)
    await store.execute("DELETE FROM users WHERE id = $1", deleted)
    assert await store.cancel_scheduled(ids[1], now) is None
    assert await Releaser(store, dispatcher, clock=lambda: now).release_due() == 1
    assert await inbox_rows(store) == [(ids[0], kept)]
