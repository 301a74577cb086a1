"""The inbox as two ranges of its index, on a real SQLite file and a real PostgreSQL database:
unread rows and read rows are apart (migration 13), every list still pages newest first
through exactly the rows it should, the unread list and mark-all-read read the unread range
only, not the read rows around it, and a page after a cursor walks each range down from it."""

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


async def generic_plan(store, statement: str, types: str, values: str) -> list[str]:
    """PostgreSQL's plan of `statement` as asyncpg runs it from its sixth time on: the generic
    plan of the prepared statement, made without the values. Seq scans off: a table this small
    is read whole whatever its indexes; the test asks what the plan is for a big inbox."""
    async with store.engine.transaction() as run:
        await run("SET LOCAL enable_seqscan = off")
        await run("SET LOCAL plan_cache_mode = force_generic_plan")
        await run(f"PREPARE next_page ({types}) AS {statement}")
        try:
            return [row[0] for row in await run(f"EXPLAIN EXECUTE next_page ({values})")]
        finally:
            await run("DEALLOCATE next_page")


# Big enough that PostgreSQL plans the read range as the index's walk for a page of 200.
BATCH_CONTENTS = """WITH batch (id, type, title) AS ({batch})
INSERT INTO notification_contents (id, type, title) SELECT id, type, title FROM batch"""
BATCH_NOTIFICATIONS = """WITH batch (id, user_id, content_id, read_at, created_at) AS ({batch})
INSERT INTO notifications (id, user_id, content_id, read_at, created_at)
SELECT id, user_id, content_id, read_at, created_at FROM batch"""


async def fill_read_inbox(store, user_id: str, n: int) -> list[str]:
    """`n` notifications, oldest first, one a millisecond, all read (so the unread counter has
    nothing to miss: written outside the enqueue); their ids."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    contents = [str(uuid.uuid4()) for _ in range(n)]
    await store.execute_batch(BATCH_CONTENTS, ("text",) * 3,
                              [(c, TYPES[i % 2], f"#{i}") for i, c in enumerate(contents)])
    await store.execute_batch(BATCH_NOTIFICATIONS, ("text", "text", "text", "bigint", "bigint"),
                              [(i_d, user_id, c, T0 + n + i, T0 + i)
                               for i, (i_d, c) in enumerate(zip(ids, contents))])
    return ids


async def test_a_next_page_reads_index_ranges_not_the_whole_inbox(store):
    """The pages after a cursor, 200 a page as a client pages through the inbox: each range is
    walked from the cursor down (no seq scan, no sort of the user's rows), generic plan or not.
    A page size written into the statement once gave the unread range a bitmap read of every
    row below the cursor and a sort (a seq scan at 100,000 rows: 9 ms a page)."""
    user = await store.create_user(str(uuid.uuid4()), "next@example.com", 1)
    ids = await fill_read_inbox(store, user.id, 3000)
    unread = set(ids[::100])  # a few, spread under the read ones
    for notification_id in unread:
        await store.set_read(user.id, notification_id, False, T0 + 2000)
    await store.execute("ANALYZE")

    engine = store.engine.name
    cursor = (T0 + 2500, ids[2500])
    for read_state in ReadState:
        for size in (201, 51):
            statement = inbox.inbox_page(engine, read_state, True, size)
            if engine == "sqlite":
                plan = [row[-1] for row in await store.execute(
                    "EXPLAIN QUERY PLAN " + statement, user.id, None, *cursor)]
                reads = [line for line in plan if line.startswith(("SEARCH n", "SCAN n"))]
                assert reads and all("notifications_inbox (user_id=? AND <expr>=? AND created_at<?)"
                                     in line for line in reads), (read_state, size, plan)
                continue
            plan = await generic_plan(store, statement, "text, text, bigint, text",
                                      f"'{user.id}', NULL, {cursor[0]}, '{cursor[1]}'")
            reads = [line.strip() for line in plan if " on notifications n" in line]
            assert reads and all(line.startswith("->  Index Scan using notifications_inbox")
                                 for line in reads), (read_state, size, plan)
            assert not any("Sort  (" in line for line in plan), "\n".join(plan)
            conditions = [line for line in plan if "Index Cond" in line and "created_at" in line]
            assert len(conditions) == len(reads) and all(
                "(read_at IS NULL) = " in line for line in conditions), plan

        pages = await every_page(store, user.id, read_state, None, 201)
        expected = [i_d for i_d in reversed(ids) if read_state == ReadState.ALL
                    or (i_d in unread) == (read_state == ReadState.UNREAD)]
        assert [i_d for page in pages for i_d in page] == expected
