"""The inbox: a user's notifications as the API lists, counts, reads and deletes them.

Its part of the store's interface, its SQL and its rows. Each method answers None (or NO_USER)
when the user no longer exists. Deleted rows stay, hidden from every query here. A change of a
row's read or deleted state changes the user's unread count (`unread_counts`) in the same
transaction, and only when the state really changed. What a notification says is its
content's (`notification_contents`, one per producer request), read through a join. Mixed into `Store`, which sets
`self.engine`; the rows are written by the delivery queue (`deliveries`).
Must not know HTTP: the routes turn None and `Missing` into their 401s and 404s.
"""

from owlmetry.store.engine import Engine
from owlmetry.store.rows import DeleteResult, Missing, Notification, ReadState
from owlmetry.store.unread_counts import ADD_UNREAD, UNREAD, UNREAD_OF
from owlmetry.store.users import unless_user_gone, why_missing

# Optional filters are NULL when unused; the CASTs tell PostgreSQL their types. $2 of the list
# is a `ReadState`.

# `Notification`'s fields, in order: the recipient's row `n` and its content `c`.
NOTIFICATION_COLUMNS = "n.id, c.type, c.title, c.body, c.link, c.team_id, n.read_at, n.created_at"
WITH_CONTENT = "notifications AS n JOIN notification_contents AS c ON c.id = n.content_id"

# A page of the inbox, newest first, through the inbox index (user_id, created_at, id): the
# keyset of the previous page (NEXT_PAGE's $4 and $5) is that index's range, so a page deep in a
# big inbox costs what the first does. Read and unread rows share the index, so a walk for
# unread ones stops after the user's unread count of them (the counter is exact, and a type's
# unread are some of them): since the last mark-all-read, only what came after it (or was
# marked unread again) is walked, not the whole inbox.
LIST_NOTIFICATIONS = """
SELECT {NOTIFICATION_COLUMNS} FROM {WITH_CONTENT}
WHERE n.user_id = $1 AND n.deleted_at IS NULL
  AND (CAST($2 AS TEXT) = 'all'
       OR (CAST($2 AS TEXT) = 'unread' AND n.read_at IS NULL)
       OR (CAST($2 AS TEXT) = 'read' AND n.read_at IS NOT NULL))
  AND (CAST($3 AS TEXT) IS NULL OR c.type = $3)
  {after}
ORDER BY n.created_at DESC, n.id DESC
LIMIT CASE WHEN CAST($2 AS TEXT) = 'unread'
           THEN (SELECT CASE WHEN COALESCE(max(u.unread), 0) < {limit}
                             THEN COALESCE(max(u.unread), 0) ELSE {limit} END
                 FROM unread_counts AS u WHERE u.user_id = $1)
           ELSE {limit} END
"""
FIRST_PAGE = LIST_NOTIFICATIONS.format(
    NOTIFICATION_COLUMNS=NOTIFICATION_COLUMNS, WITH_CONTENT=WITH_CONTENT, after="",
    limit="CAST($4 AS BIGINT)")
NEXT_PAGE = LIST_NOTIFICATIONS.format(
    NOTIFICATION_COLUMNS=NOTIFICATION_COLUMNS, WITH_CONTENT=WITH_CONTENT,
    after="AND (n.created_at, n.id) < (CAST($4 AS BIGINT), CAST($5 AS TEXT))",
    limit="CAST($6 AS BIGINT)")

# The user's unread rows, found as the unread list finds them, through the inbox index newest
# first and at most the user's count of them (so all of them), then each updated by its key.
UNREAD_OF_USER = f"""
    SELECT id FROM notifications
    WHERE user_id = $1 AND {UNREAD}
      AND (CAST($2 AS TEXT) IS NULL OR EXISTS (
          SELECT 1 FROM notification_contents AS c
          WHERE c.id = notifications.content_id AND c.type = $2))
    ORDER BY created_at DESC, id DESC
    LIMIT (SELECT COALESCE(max(u.unread), 0) FROM unread_counts AS u WHERE u.user_id = $1)"""
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
        if before is None:
            rows = await self.engine.read(FIRST_PAGE, user_id, read_state, type, limit)
        else:
            rows = await self.engine.read(NEXT_PAGE, user_id, read_state, type, *before, limit)
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
