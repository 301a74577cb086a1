"""The inbox as two ranges of its index, on a real SQLite file and a real PostgreSQL database:
unread rows and read rows are apart (migration 13), every list still pages newest first
through exactly the rows it should, and the unread list and mark-all-read read the unread range
only, not the read rows around it."""

import random
import uuid

from owlmetry.store import NotificationContent, ReadState, inbox

T0 = 1_700_000_000_000
TYPES = ("feedback.new", "issue.new")


async def fill_inbox(store, user_id: str, n: int) -> list[str]:
    """`n` notifications, oldest first, one a millisecond, types alternating; their ids."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, notification_id in enumerate(ids):
        await store.enqueue_notifications([(notification_id, user_id)],
                                          NotificationContent(TYPES[i % 2], f"#{i}"), [], T0 + i)
    return ids


async def every_page(store, user_id, read_state, type_, size) -> list[list[str]]:
    pages, before = [], None
    while True:
        page = await store.list_notifications(user_id, read_state, type_, before, size)
        pages.append([n.id for n in page])
        if len(page) < size:
            return pages
        before = (page[-1].created_at, page[-1].id)


async def test_every_list_pages_newest_first_whichever_rows_are_read(store):
    user = await store.create_user(str(uuid.uuid4()), "pages@example.com", 1)
    ids = await fill_inbox(store, user.id, 40)
    # Two rows of the same millisecond: the id breaks the tie, across the two ranges too.
    twins = sorted(str(uuid.uuid4()) for _ in range(2))
    await store.enqueue_notifications([(twins[0], user.id), (twins[1], user.id)],
                                      NotificationContent(TYPES[0], "twins"), [], T0 + 20)
    order = sorted([(T0 + i, i_d) for i, i_d in enumerate(ids)] + [(T0 + 20, t) for t in twins],
                   reverse=True)
    type_of = {i_d: TYPES[i % 2] for i, i_d in enumerate(ids)} | dict.fromkeys(twins, TYPES[0])
    chance = random.Random(7)
    read = {i_d for _, i_d in order if chance.random() < 0.5} | {twins[0]}
    deleted = {ids[3], ids[30], twins[1]} | {next(iter(sorted(read)))}
    for notification_id in read:
        await store.set_read(user.id, notification_id, True, T0 + 100)
    for notification_id in deleted:
        await store.delete_notification(user.id, notification_id, T0 + 200)

    for read_state in ReadState:
        for type_ in (None, *TYPES):
            expected = [i_d for _, i_d in order if i_d not in deleted
                        and (type_ is None or type_of[i_d] == type_)
                        and (read_state == ReadState.ALL
                             or (i_d in read) == (read_state == ReadState.READ))]
            pages = await every_page(store, user.id, read_state, type_, 4)
            assert [i_d for page in pages for i_d in page] == expected, (read_state, type_)
            assert all(len(page) == 4 for page in pages[:-1])


async def test_the_unread_list_and_mark_all_read_read_the_unread_range_only(store):
    user = await store.create_user(str(uuid.uuid4()), "range@example.com", 1)
    ids = await fill_inbox(store, user.id, 200)
    await store.mark_all_read(user.id, None, T0 + 1000)
    for notification_id in (ids[0], ids[100]):  # unread again, deep below read ones
        await store.set_read(user.id, notification_id, False, T0 + 2000)
    await store.execute("ANALYZE")

    engine = store.engine.name
    statements = [(inbox.inbox_page(engine, ReadState.UNREAD, False, 50), (user.id, None)),
                  (inbox.inbox_page(engine, ReadState.UNREAD, True, 50),
                   (user.id, None, T0 + 150, ids[150])),
                  (inbox.MARK_ALL_READ[engine], (user.id, None, T0 + 3000))]
    for statement, params in statements:
        if engine == "sqlite":
            plan = [row[-1] for row in await store.execute("EXPLAIN QUERY PLAN " + statement,
                                                           *params)]
            ranges = [line for line in plan if "notifications_inbox" in line]
            assert ranges and all("(user_id=? AND <expr>=?" in line for line in ranges), plan
        else:
            # A table this small is read whole whatever its indexes: plan as for a big one.
            async with store.engine.transaction() as run:
                await run("SET LOCAL enable_seqscan = off")
                plan = [row[0] for row in await run("EXPLAIN " + statement, *params)]
            ranges = [next(line for line in plan[i:] if "Index Cond" in line)
                      for i, line in enumerate(plan) if "notifications_inbox" in line]
            assert ranges and all("((read_at IS NULL) = true)" in line for line in ranges), plan

    unread = await store.list_notifications(user.id, ReadState.UNREAD, None, None, 50)
    assert [n.id for n in unread] == [ids[100], ids[0]]
    assert await store.mark_all_read(user.id, None, T0 + 3000) == 2
    assert await store.unread_count(user.id) == 0
