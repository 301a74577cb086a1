"""Retention: the statements of the inbox's clean-up, one bounded batch at a time.

Soft-deletes read notifications read before a cutoff; removes notifications soft-deleted
before one, with their deliveries, push records and retries (no foreign keys: deleted here, in
the same transaction, by `remove_notifications`, which a user's deletion uses too) and the
contents whose last recipient row went (a content shared with rows that stay, stays). Each
call is one batch of at most `limit` rows in one short transaction and says how many rows it
did; the caller (`owlmetry.retention`) decides the cutoffs, loops and pauses. No unread count
changes: only read rows are soft-deleted (re-checked in the UPDATE itself, so a row marked
unread meanwhile stays), and only soft-deleted rows go.
Mixed into `Store`, which sets `self.engine`. Must not decide what is old.
"""

from contextlib import AbstractAsyncContextManager

from owlmetry.store.engine import Engine, Run

# Names the clean-up among the advisory locks of PostgreSQL (one-key: apart from the login
# codes' two-key locks; not the migration's).
RETENTION_LOCK = 0x6F776C72

# $1 the cutoff, $2 now, $3 the batch's size.
SOFT_DELETE_READ = """
UPDATE notifications SET deleted_at = $2
WHERE id IN (SELECT id FROM notifications
             WHERE read_at IS NOT NULL AND read_at < $1 AND deleted_at IS NULL
             LIMIT $3)
  AND read_at IS NOT NULL AND read_at < $1 AND deleted_at IS NULL
RETURNING id
"""

DELETED_BEFORE = """
SELECT id, content_id FROM notifications
WHERE deleted_at IS NOT NULL AND deleted_at < $1
LIMIT $2
"""

REMOVE_PUSHES = """
WITH batch (id) AS ({batch})
DELETE FROM notification_pushes WHERE notification_id IN (SELECT id FROM batch)
"""

REMOVE_RETRIES = """
WITH batch (id) AS ({batch})
DELETE FROM notification_push_retries WHERE notification_id IN (SELECT id FROM batch)
"""

REMOVE_DELIVERIES = """
WITH batch (id) AS ({batch})
DELETE FROM notification_deliveries WHERE notification_id IN (SELECT id FROM batch)
"""

REMOVE_NOTIFICATIONS = """
WITH batch (id) AS ({batch})
DELETE FROM notifications WHERE id IN (SELECT id FROM batch)
"""

# The batch's contents that have no recipient row left: one index probe each.
REMOVE_CONTENTS = """
WITH batch (id) AS ({batch})
DELETE FROM notification_contents
WHERE id IN (SELECT id FROM batch)
  AND NOT EXISTS (SELECT 1 FROM notifications AS n WHERE n.content_id = notification_contents.id)
"""


async def remove_notifications(engine: Engine, run: Run, rows: list[tuple[str, str]]) -> None:
    """Remove the notifications of `rows` (id, content_id) with everything that points at them
    (deliveries, push records, retries), and the contents left with no recipient row, in the
    transaction `run`."""
    ids = [(row[0],) for row in rows]
    for statement in (REMOVE_PUSHES, REMOVE_RETRIES, REMOVE_DELIVERIES, REMOVE_NOTIFICATIONS):
        await engine.run_batched(run, statement, ("text",), ids)
    await engine.run_batched(run, REMOVE_CONTENTS, ("text",),
                             [(content_id,) for content_id in {row[1] for row in rows}])


class Retention:
    engine: Engine

    def retention_lock(self) -> AbstractAsyncContextManager[bool]:
        """`async with store.retention_lock() as ours:` -- False while another process runs
        the clean-up (PostgreSQL); held until the block ends."""
        return self.engine.only_one_process(RETENTION_LOCK)

    async def soft_delete_read(self, read_before: int, now: int, limit: int) -> int:
        """Soft-delete up to `limit` notifications read before `read_before`; how many."""
        return len(await self.engine.write_bulk(SOFT_DELETE_READ, read_before, now, limit))

    async def remove_deleted(self, deleted_before: int, limit: int) -> int:
        """Remove up to `limit` notifications soft-deleted before `deleted_before`, with their
        deliveries, push records and now unreferenced contents; how many notifications."""
        engine = self.engine
        async with engine.transaction(bulk=True) as run:
            rows = await run(DELETED_BEFORE, deleted_before, limit)
            await remove_notifications(engine, run, rows)
        return len(rows)
