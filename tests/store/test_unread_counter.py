"""The unread counter on a real SQLite file and a real PostgreSQL database: it never drifts from
the rows it counts, whatever the sequence (or race) of changes, and it is what the badge reads,
without counting the inbox."""

import asyncio
import dataclasses
import random
import uuid

import pytest

from owlmetry.config import Config
from owlmetry.retention import DAY_MS, clean_up
from owlmetry.store import NotificationContent, ReadState, RecipientGroup, deliveries

T0 = 1_700_000_000_000
TYPES = ("feedback.new", "issue.new")
COUNTED = """
SELECT user_id, count(*) FROM notifications
WHERE read_at IS NULL AND deleted_at IS NULL GROUP BY user_id
"""


async def assert_no_drift(store, user_ids: list[str]) -> None:
    counted = dict(await store.execute(COUNTED))
    kept = {user_id: unread for user_id, unread in
            await store.execute("SELECT user_id, unread FROM unread_counts") if unread}
    assert kept == counted
    for user_id in user_ids:
        assert await store.unread_count(user_id) == counted.get(user_id, 0)


class Changes:
    """Random changes of every kind that touches read or deleted state, as of a moving `now`."""

    def __init__(self, store, config: Config, user_ids: list[str], seed: int):
        self.store, self.config, self.user_ids = store, config, user_ids
        self.random = random.Random(seed)
        self.ids: list[tuple[str, str]] = []  # (notification_id, user_id)
        self.now = T0

    async def one(self) -> str:
        chance, store = self.random.random(), self.store
        self.now += self.random.choice([1, 1_000, 20 * DAY_MS])
        if chance < 0.3 or not self.ids:
            recipients = [(str(uuid.uuid4()), u) for u in self.random.sample(
                self.user_ids, self.random.randint(1, len(self.user_ids)))]
            recipients.append((str(uuid.uuid4()), str(uuid.uuid4())))  # no such user
            content = NotificationContent(self.random.choice(TYPES), "t")
            # Some recipients turned the inbox off for the type: their rows are born deleted.
            muted = self.random.randint(0, len(recipients))
            written = await store.enqueue_groups(
                [RecipientGroup(("ios_push",), True, recipients[:muted]),
                 RecipientGroup(("ios_push",), False, recipients[muted:])], content, self.now)
            self.ids += [(n, u) for n, u in recipients if n in written]
            return "enqueue"
        notification_id, user_id = self.random.choice(self.ids)
        if chance < 0.6:
            await store.set_read(user_id, notification_id, self.random.random() < 0.6, self.now)
            return "set_read"
        if chance < 0.7:
            await store.mark_all_read(user_id, self.random.choice((None, *TYPES)), self.now)
            return "mark_all_read"
        if chance < 0.85:
            await store.delete_notification(user_id, notification_id, self.now)
            return "delete"
        await clean_up(store, self.config, self.now, batch_size=3, pause_s=0)
        return "retention"


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_counter_never_drifts_over_random_changes(store, config, seed):
    user_ids = [(await store.create_user(str(uuid.uuid4()), f"{n}@example.com", 1)).id
                for n in range(3)]
    retention = dataclasses.replace(config, retention_read_days=30, retention_deleted_days=60)
    changes = Changes(store, retention, user_ids, seed)
    done = set()
    for _ in range(150):
        done.add(await changes.one())
        await assert_no_drift(store, user_ids)
    assert done == {"enqueue", "set_read", "mark_all_read", "delete", "retention"}


async def test_the_counter_never_drifts_under_concurrent_changes(store, config):
    user_ids = [(await store.create_user(str(uuid.uuid4()), f"{n}@example.com", 1)).id
                for n in range(3)]
    changes = Changes(store, config, user_ids, seed=3)
    for _ in range(20):
        await changes.one()
    for _ in range(5):
        await asyncio.gather(*(changes.one() for _ in range(40)))
        await assert_no_drift(store, user_ids)


async def test_a_full_inbox_gets_its_count_as_badge(store):
    user = await store.create_user(str(uuid.uuid4()), "full@example.com", 1)
    many = [(str(uuid.uuid4()), user.id) for _ in range(3_000)]
    await store.enqueue_notifications(many, NotificationContent("t", "old"), [], T0)
    await store.set_read(user.id, many[0][0], True, T0)
    await store.enqueue_notifications([(str(uuid.uuid4()), user.id)],
                                      NotificationContent("t", "new"), ["ios_push"], T0 + 1)

    (claim,) = await store.claim_deliveries("d1", T0 + 2, 30_000, 10)
    assert claim.unread == 3_000 == await store.unread_count(user.id)


async def test_the_claims_badge_reads_the_counter_not_the_inbox(store):
    """The claim's content read looks notifications up by key, and nothing else of theirs."""
    engine = store.engine
    statement = deliveries.CLAIMED_NOTIFICATIONS[engine.name]
    ids = [str(uuid.uuid4())]
    read, *args = engine.batch_call(statement, ("text",), [(i,) for i in ids], ())
    if engine.name == "sqlite":
        plan = await store.execute("EXPLAIN QUERY PLAN " + read, *args)
        lines = [row[-1] for row in plan]
        on_notifications = [line for line in lines if "notifications" in line]
        assert on_notifications and all(
            line.startswith("SEARCH n USING INDEX sqlite_autoindex_notifications_1 (id=?)")
            for line in on_notifications), lines
    else:
        plan = await store.execute("EXPLAIN " + read, *args)
        lines = [row[0] for row in plan]
        assert not any("Aggregate" in line or "notifications_unread" in line
                       for line in lines), lines
    assert any("unread_counts" in line for line in lines), lines


async def test_rows_born_deleted_are_not_counted(store):
    """An enqueue may write a recipient's row deleted from the start (in_app turned off for its
    type): the enqueue's count takes the inserted rows that are visible and unread only."""
    user = await store.create_user(str(uuid.uuid4()), "muted@example.com", 1)
    inserted = [(user.id, None, None), (user.id, None, T0), (user.id, T0, None),
                (user.id, None, None)]
    await store.execute_batch(deliveries.COUNT_ENQUEUED, deliveries.ADDED_TYPES, inserted)
    assert await store.unread_count(user.id) == 2


async def test_unread_ones_below_many_read_ones_are_listed_paged_and_marked(store):
    """The unread list and mark-all-read walk the inbox only as far as the user's count of
    unread notifications takes them: every one is found, however deep, a page at a time."""
    user = await store.create_user(str(uuid.uuid4()), "deep@example.com", 1)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    for n, notification_id in enumerate(ids):  # oldest first
        await store.enqueue_notifications([(notification_id, user.id)],
                                          NotificationContent(TYPES[n % 2], f"#{n}"), [], T0 + n)
    unread = {ids[0], ids[1], ids[150], ids[299]}
    for notification_id in set(ids) - unread:
        await store.set_read(user.id, notification_id, True, T0 + 1000)

    pages, before = [], None
    while True:
        page = await store.list_notifications(user.id, ReadState.UNREAD, None, before, 3)
        pages.append([n.id for n in page])
        if len(page) < 3:
            break
        before = (page[-1].created_at, page[-1].id)
    assert pages == [[ids[299], ids[150], ids[1]], [ids[0]]]
    firsts = await store.list_notifications(user.id, ReadState.UNREAD, TYPES[0], None, 10)
    assert [n.id for n in firsts] == [ids[150], ids[0]]

    assert await store.mark_all_read(user.id, TYPES[1], T0 + 2000) == 2  # #299 and #1
    assert await store.mark_all_read(user.id, None, T0 + 2000) == 2
    assert await store.list_notifications(user.id, ReadState.UNREAD, None, None, 10) == []
    await assert_no_drift(store, [user.id])
