"""The inbox: a user's notifications as the API lists, counts, reads and deletes them.

Its part of the store's interface, its SQL and its rows. Each method answers None (or NO_USER)
when the user no longer exists. Deleted rows stay, hidden from every query here. A change of a
row's read or deleted state changes the user's unread count (`unread_counts`) in the same
transaction, and only when the state really changed. What a notification says is its
content's (`notification_contents`, one per producer request), read through a join. Mixed into `Store`, which sets
`self.engine`; the rows are written by the delivery queue (`deliveries`).
Must not know HTTP: the routes turn None and `Missing` into their 401s and 404s.
"""

import functools

from owlmetry.store.engine import Engine
from owlmetry.store.rows import DeleteResult, Missing, Notification, ReadState
from owlmetry.store.unread_counts import ADD_UNREAD, UNREAD, UNREAD_OF
from owlmetry.store.users import unless_user_gone, why_missing

# Optional filters are NULL when unused; the CASTs tell PostgreSQL their types.

# `Notification`'s fields, in order: the recipient's row `n` and its content `c`.
NOTIFICATION_COLUMNS = "n.id, c.type, c.title, c.body, c.link, c.team_id, n.read_at, n.created_at"
WITH_CONTENT = "notifications AS n JOIN notification_contents AS c ON c.id = n.content_id"

# The inbox index is (user_id, read_at IS NULL, created_at DESC, id DESC): a user's unread rows
# and read rows are two ranges of it, each newest first, so the unread list and mark-all-read
# read only the unread rows however many read ones the inbox holds, and the whole inbox is the
# two ranges merged. Each range is written so that both engines see it as the index's range:
# SQLite matches only `(expression) = value` to an indexed expression, and PostgreSQL turns
# `(read_at IS NULL) = FALSE` into `read_at IS NOT NULL`, which is no column of the index.
UNREAD_RANGE = "(n.read_at IS NULL) = TRUE"
READ_RANGE = {"sqlite": "(n.read_at IS NULL) = FALSE",
              "postgresql": "(n.read_at IS NULL) IS FALSE"}

# One range's page: $1 the user, $2 the type (NULL: any), after the keyset of the previous
# page's last ($3, $4) when there is one. The page's size is written into the statement: with
# it a parameter, PostgreSQL's generic plan (from a statement's sixth run on) guesses a tenth of
# the range, and reads a big inbox's read range with parallel workers, whose start alone took
# 15-20 ms.
INBOX_RANGE = """SELECT {NOTIFICATION_COLUMNS} FROM {WITH_CONTENT}
WHERE n.user_id = $1 AND {state} AND n.deleted_at IS NULL
  AND (CAST($2 AS TEXT) IS NULL OR c.type = $2)
  {after}
ORDER BY n.created_at DESC, n.id DESC
LIMIT {limit}"""
AFTER = "AND (n.created_at, n.id) < (CAST($3 AS BIGINT), CAST($4 AS TEXT))"
# The unread range's limit, alone or merged with the read range: the user's unread count (all
# of the range: the counter is exact; a type's unread are some of it), at most the page. Not
# needed for the answer, but a limit PostgreSQL cannot know while planning. It ignores the
# statistics of a partial index's expression, so it takes the unread range for half the
# user's rows; with a known limit above the few unread rows it expects (any page after a
# cursor, any page of 200) it would read them all, and rather reads the table whole and sorts
# when the user's rows are most of it (9 ms a page at 100,000 rows). An unknown limit it plans
# as a tenth of the range: a walk of the index, newest first. The read range keeps its known
# limit (unknown, a big one is planned as a tenth of it, with parallel workers: above), so an
# inbox almost all unread still reads the table for its read rows: the statistics on
# `(read_at IS NULL)` would mend both (benchmarks/RESULTS.md, issue 15, branch inbox).
COUNTED = "SELECT COALESCE(max(u.unread), 0) AS c FROM unread_counts AS u WHERE u.user_id = $1"
UNREAD_COUNT_OF_USER = f"({COUNTED})"
UNREAD_PAGE_SIZE = f"""(SELECT CASE WHEN counted.c < {{size}} THEN counted.c ELSE {{size}} END
       FROM ({COUNTED}) AS counted)"""


@functools.lru_cache(maxsize=1024)  # page sizes are few (the API's are 2 to 201)
def inbox_page(engine: str, read_state: ReadState, after: bool, size: int) -> str:
    """A page of `size` of the inbox, newest first: one range, or for ALL a page of each
    merged."""
    size = int(size)
    ranges = {ReadState.UNREAD: [UNREAD_RANGE], ReadState.READ: [READ_RANGE[engine]],
              ReadState.ALL: [UNREAD_RANGE, READ_RANGE[engine]]}[read_state]
    pages = [INBOX_RANGE.format(NOTIFICATION_COLUMNS=NOTIFICATION_COLUMNS,
                                WITH_CONTENT=WITH_CONTENT, state=state,
                                after=AFTER if after else "",
                                limit=UNREAD_PAGE_SIZE.format(size=size)
                                if state == UNREAD_RANGE else size)
             for state in ranges]
    if len(pages) == 1:
        return pages[0]
    return "\nUNION ALL\n".join(
        f"SELECT * FROM ({page}) AS {name}" for page, name in zip(pages, ("u", "r"))
    ) + f"\nORDER BY created_at DESC, id DESC\nLIMIT {size}"


# The user's unread rows (of type $2, NULL: any): the unread range of the inbox index (at most
# the user's count of them, so all of them: see UNREAD_COUNT_OF_USER), each row then updated
# by its key.
UNREAD_OF_USER = f"""
    SELECT n.id FROM notifications AS n
    WHERE n.user_id = $1 AND {UNREAD_RANGE} AND n.deleted_at IS NULL
      AND (CAST($2 AS TEXT) IS NULL OR EXISTS (
          SELECT 1 FROM notification_contents AS c
          WHERE c.id = n.content_id AND c.type = $2))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT {UNREAD_COUNT_OF_USER}"""
MARK_ALL_READ = {
    "sqlite": f"""
UPDATE notifications SET read_at = $3
WHERE id IN ({UNREAD_OF_USER})
RETURNING id
""",
    # Unread checked again on the row updated: a row another transaction has just marked read
    # is seen as it is now, not as the search saw it.
    "postgresql": f"""
UPDATE notifications SET read_at = $3
WHERE id IN ({UNREAD_OF_USER})
  AND user_id = $1 AND {UNREAD}
RETURNING id
""",
}

# Only a real change: marking a read notification read again keeps the first time it was read,
# and changes no count. (The row as listed is read after, in the same transaction: RETURNING
# cannot join its content on SQLite.)
MARK_READ = f"""
UPDATE notifications SET read_at = $3
WHERE id = $2 AND user_id = $1 AND {UNREAD}
RETURNING id
"""

MARK_UNREAD = """
UPDATE notifications SET read_at = NULL
WHERE id = $2 AND user_id = $1 AND read_at IS NOT NULL AND deleted_at IS NULL
RETURNING id
"""

NOTIFICATION = f"""
SELECT {NOTIFICATION_COLUMNS} FROM {WITH_CONTENT}
WHERE n.id = $2 AND n.user_id = $1 AND n.deleted_at IS NULL
"""

# `read_at` is untouched, so the row says whether it was unread.
DELETE_NOTIFICATION = """
UPDATE notifications SET deleted_at = $3
WHERE id = $2 AND user_id = $1 AND deleted_at IS NULL
RETURNING read_at
"""


class Inbox:
    engine: Engine

    async def list_notifications(
        self, user_id: str, read_state: ReadState, type: str | None,
        before: tuple[int, str] | None, limit: int,
    ) -> list[Notification] | None:
        """Newest first by (created_at, id); `before` is the keyset of the previous page's last."""
        statement = inbox_page(self.engine.name, ReadState(read_state), before is not None, limit)
        rows = await self.engine.read(statement, user_id, type, *(before or ()))
        return await unless_user_gone(self.engine, user_id, [Notification(*row) for row in rows])

    async def unread_count(self, user_id: str) -> int | None:
        rows = await self.engine.read(UNREAD_OF, user_id)
        return await unless_user_gone(self.engine, user_id, rows[0][0] if rows else 0)

    async def mark_all_read(self, user_id: str, type: str | None, now: int) -> int | None:
        async with self.engine.transaction() as run:
            marked = len(await run(MARK_ALL_READ[self.engine.name], user_id, type, now))
            if marked:
                await run(ADD_UNREAD, user_id, -marked)
        return await unless_user_gone(self.engine, user_id, marked)

    async def set_read(
        self, user_id: str, notification_id: str, read: bool, now: int
    ) -> Notification | Missing:
        """The updated row, or why there is none (missing, deleted, another user's: NOT_FOUND)."""
        async with self.engine.transaction() as run:
            changed = await (run(MARK_READ, user_id, notification_id, now) if read
                             else run(MARK_UNREAD, user_id, notification_id))
            if changed:
                await run(ADD_UNREAD, user_id, -1 if read else 1)
                rows = await run(NOTIFICATION, user_id, notification_id)
        if not changed:
            rows = await self.engine.read(NOTIFICATION, user_id, notification_id)
        if rows:
            return Notification(*rows[0])
        return await why_missing(self.engine, user_id)

    async def delete_notification(
        self, user_id: str, notification_id: str, now: int
    ) -> DeleteResult:
        """Soft delete: the row stays, hidden from every inbox query."""
        async with self.engine.transaction() as run:
            deleted = await run(DELETE_NOTIFICATION, user_id, notification_id, now)
            if deleted and deleted[0][0] is None:
                await run(ADD_UNREAD, user_id, -1)
        if deleted:
            return DeleteResult.DELETED
        return DeleteResult(await why_missing(self.engine, user_id))
