"""The inbox: a user's notifications as the API lists, counts, reads and deletes them.

Its part of the store's interface, its SQL and its rows. Each method answers None (or NO_USER)
when the user no longer exists. Deleted rows stay, hidden from every query here. Mixed into
`Store`, which sets `self.engine`; the rows are written by the delivery queue (`deliveries`).
Must not know HTTP: the routes turn None and `Missing` into their 401s and 404s.
"""

from owlmetry.store.engine import Engine
from owlmetry.store.rows import DeleteResult, Missing, Notification, ReadState
from owlmetry.store.users import unless_user_gone, why_missing

# Optional filters are NULL when unused; the CASTs tell PostgreSQL their types. $2 of the list
# is a `ReadState`.

# `Notification`'s fields, in order.
NOTIFICATION_COLUMNS = "id, type, title, body, link, team_id, read_at, created_at"

LIST_NOTIFICATIONS = f"""
SELECT {NOTIFICATION_COLUMNS} FROM notifications
WHERE user_id = $1 AND deleted_at IS NULL
  AND (CAST($2 AS TEXT) = 'all'
       OR (CAST($2 AS TEXT) = 'unread' AND read_at IS NULL)
       OR (CAST($2 AS TEXT) = 'read' AND read_at IS NOT NULL))
  AND (CAST($3 AS TEXT) IS NULL OR type = $3)
  AND (CAST($4 AS BIGINT) IS NULL OR (created_at, id) < (CAST($4 AS BIGINT), CAST($5 AS TEXT)))
ORDER BY created_at DESC, id DESC
LIMIT $6
"""

UNREAD_COUNT = """
SELECT count(*) FROM notifications
WHERE user_id = $1 AND read_at IS NULL AND deleted_at IS NULL
"""

MARK_ALL_READ = """
UPDATE notifications SET read_at = $3
WHERE user_id = $1 AND read_at IS NULL AND deleted_at IS NULL
  AND (CAST($2 AS TEXT) IS NULL OR type = $2)
RETURNING id
"""

# Marking a read notification read again keeps the first time it was read.
SET_READ = f"""
UPDATE notifications
SET read_at = CASE WHEN CAST($3 AS BIGINT) IS NULL THEN NULL ELSE COALESCE(read_at, $3) END
WHERE id = $2 AND user_id = $1 AND deleted_at IS NULL
RETURNING {NOTIFICATION_COLUMNS}
"""

DELETE_NOTIFICATION = """
UPDATE notifications SET deleted_at = $3
WHERE id = $2 AND user_id = $1 AND deleted_at IS NULL
RETURNING id
"""


class Inbox:
    engine: Engine

    async def list_notifications(
        self, user_id: str, read_state: ReadState, type: str | None,
        before: tuple[int, str] | None, limit: int,
    ) -> list[Notification] | None:
        """Newest first by (created_at, id); `before` is the keyset of the previous page's last."""
        created_at, notification_id = before or (None, None)
        rows = await self.engine.read(LIST_NOTIFICATIONS, user_id, read_state, type,
                                      created_at, notification_id, limit)
        return await unless_user_gone(self.engine, user_id, [Notification(*row) for row in rows])

    async def unread_count(self, user_id: str) -> int | None:
        (row,) = await self.engine.read(UNREAD_COUNT, user_id)
        return await unless_user_gone(self.engine, user_id, row[0])

    async def mark_all_read(self, user_id: str, type: str | None, now: int) -> int | None:
        rows = await self.engine.write(MARK_ALL_READ, user_id, type, now)
        return await unless_user_gone(self.engine, user_id, len(rows))

    async def set_read(
        self, user_id: str, notification_id: str, read: bool, now: int
    ) -> Notification | Missing:
        """The updated row, or why there is none (missing, deleted, another user's: NOT_FOUND)."""
        rows = await self.engine.write(SET_READ, user_id, notification_id,
                                       now if read else None)
        if rows:
            return Notification(*rows[0])
        return await why_missing(self.engine, user_id)

    async def delete_notification(
        self, user_id: str, notification_id: str, now: int
    ) -> DeleteResult:
        """Soft delete: the row stays, hidden from every inbox query."""
        if await self.engine.write(DELETE_NOTIFICATION, user_id, notification_id, now):
            return DeleteResult.DELETED
        return DeleteResult(await why_missing(self.engine, user_id))
