"""Scheduled sends: a producer request held until its `send_at`, with its SQL and row mapping.

`schedule` stores the content (once, in `notification_contents`), the send and its recipients
with the notification ids the producer is given, in one transaction; nothing else of it exists
until the release. The release loop claims due sends under a lease (as the queue claims
deliveries), reads what enqueueing them needs, renews its lease while it works, and ends the
send; `cancel_scheduled` cancels one recipient's notification only while no release has
claimed its send. Mixed into `Store`, which sets `self.engine`. Must not enqueue anything itself
(the dispatcher's enqueue does, with the pre-assigned ids) nor decide what a valid `send_at` is.
"""

from dataclasses import dataclass

from owlmetry.store.deliveries import (
    CONTENT_COLUMNS,
    INSERT_CONTENT,
    content_fields,
    content_from_columns,
)
from owlmetry.store.engine import Engine
from owlmetry.store.rows import NotificationContent

INSERT_SEND = """
INSERT INTO scheduled_sends (content_id, send_at, available_at, created_at)
VALUES ($1, $2, $2, $3)"""

# $1 the send; the batch is the recipients' (notification_id, user_id). A user deleted since
# the request was read falls out of the join.
INSERT_RECIPIENTS = """
WITH batch (notification_id, user_id) AS ({batch})
INSERT INTO scheduled_recipients (notification_id, content_id, user_id)
SELECT b.notification_id, $1, u.id FROM batch AS b JOIN users AS u ON u.id = b.user_id
RETURNING notification_id"""

# The oldest due sends not yet released, leased to $1 until $3 (a crashed release is claimed
# again once its lease lapses). `{lock}` is the engine's `skip_locked`.
CLAIM_SENDS = """
UPDATE scheduled_sends SET claimed_by = $1, available_at = $3
WHERE content_id IN (
    SELECT content_id FROM scheduled_sends
    WHERE released_at IS NULL AND available_at <= $2
    ORDER BY available_at
    LIMIT $4 {lock})
RETURNING content_id"""

RENEW_SEND = """
UPDATE scheduled_sends SET available_at = $3
WHERE content_id = $1 AND claimed_by = $2 AND released_at IS NULL"""

SEND_CONTENT = f"SELECT {CONTENT_COLUMNS} FROM notification_contents WHERE id = $1"

RELEASED_RECIPIENTS = """
SELECT notification_id, user_id FROM scheduled_recipients
WHERE content_id = $1 AND cancelled_at IS NULL
ORDER BY notification_id"""

# The end of a release: the send is done; its enqueued recipients' rows go (their inbox rows
# answer for them now), the cancelled ones stay; a content no recipient got (all cancelled)
# goes too.
END_SEND = """
UPDATE scheduled_sends SET released_at = $3
WHERE content_id = $1 AND claimed_by = $2 AND released_at IS NULL
RETURNING content_id"""

FORGET_RELEASED = """
DELETE FROM scheduled_recipients WHERE content_id = $1 AND cancelled_at IS NULL"""

REMOVE_UNSENT_CONTENT = """
DELETE FROM notification_contents
WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM notifications AS n WHERE n.content_id = $1)"""

# Cancel one recipient, only while no release has claimed the send. On PostgreSQL the send's
# row is locked first, so a claim committing meanwhile is seen (the row is read again after
# the wait) and the cancel does nothing: a cancel and a release never both succeed.
CANCEL = """
WITH send AS (
    SELECT s.content_id FROM scheduled_sends AS s
    JOIN scheduled_recipients AS r ON r.content_id = s.content_id
    WHERE r.notification_id = $1 AND s.claimed_by IS NULL {lock})
UPDATE scheduled_recipients SET cancelled_at = $2
WHERE notification_id = $1 AND cancelled_at IS NULL
  AND content_id IN (SELECT content_id FROM send)"""

CANCEL_LOCK = {"sqlite": "", "postgresql": "FOR UPDATE OF s"}

SCHEDULED_STATE = """
SELECT s.send_at, r.cancelled_at, s.claimed_by IS NOT NULL
FROM scheduled_recipients AS r JOIN scheduled_sends AS s ON s.content_id = r.content_id
WHERE r.notification_id = $1"""

NOTIFICATION_EXISTS = "SELECT 1 FROM notifications WHERE id = $1"


@dataclass(frozen=True, slots=True)
class ScheduledState:
    """Where one notification of a producer stands. `send_at` None: it was never scheduled (sent
    at once). `started`: its delivery has begun (or is over); a cancel comes too late."""

    notification_id: str
    send_at: int | None
    cancelled_at: int | None
    started: bool


@dataclass(frozen=True, slots=True)
class Release:
    """A claimed send: what enqueueing it needs. `recipients`: (notification_id, user_id) not
    cancelled, in id order."""

    content_id: str
    content: NotificationContent
    recipients: list[tuple[str, str]]


class Schedules:
    engine: Engine

    async def schedule(self, content_id: str, content: NotificationContent,
                       recipients: list[tuple[str, str]], send_at: int, now: int) -> set[str]:
        """Store a send of `content` to `recipients` (notification_id, user_id) at `send_at`,
        whole or not at all; the notification ids stored (users that no longer exist are
        skipped)."""
        engine = self.engine
        async with engine.transaction() as run:
            await run(INSERT_CONTENT, content_id, *content_fields(content))
            await run(INSERT_SEND, content_id, send_at, now)
            stored = await engine.run_batched(run, INSERT_RECIPIENTS, ("text", "text"),
                                              recipients, content_id)
        return {row[0] for row in stored}

    async def claim_scheduled(self, owner: str, now: int, lease_ms: int,
                              limit: int) -> list[str]:
        """Lease up to `limit` sends due by `now` to `owner`; their content ids."""
        engine = self.engine
        rows = await engine.write_lease(CLAIM_SENDS.format(lock=engine.skip_locked),
                                        owner, now, now + lease_ms, limit)
        return [row[0] for row in rows]

    async def scheduled_release(self, content_id: str) -> Release | None:
        """What releasing a claimed send needs; None if its content is gone."""
        engine = self.engine
        found = await engine.read_bulk(SEND_CONTENT, content_id)
        if not found:
            return None
        content = content_from_columns(found[0][1:])
        recipients = await engine.read_bulk(RELEASED_RECIPIENTS, content_id)
        return Release(content_id, content, [(row[0], row[1]) for row in recipients])

    async def renew_scheduled(self, owner: str, content_id: str, until: int) -> None:
        await self.engine.write_lease(RENEW_SEND, content_id, owner, until)

    async def end_scheduled(self, owner: str, content_id: str, now: int) -> bool:
        """Mark the send released, if `owner` still holds it; False if it does not."""
        async with self.engine.transaction(bulk=True) as run:
            if not await run(END_SEND, content_id, owner, now):
                return False
            await run(FORGET_RELEASED, content_id)
            await run(REMOVE_UNSENT_CONTENT, content_id)
        return True

    async def cancel_scheduled(self, notification_id: str, now: int) -> ScheduledState | None:
        """Cancel a scheduled notification whose send no release has claimed (again: no
        change); then its state. None: no such notification."""
        engine = self.engine
        await engine.write(CANCEL.format(lock=CANCEL_LOCK[engine.name]), notification_id, now)
        rows = await engine.read(SCHEDULED_STATE, notification_id)
        if rows:
            send_at, cancelled_at, claimed = rows[0]
            return ScheduledState(notification_id, send_at, cancelled_at,
                                  bool(claimed) and cancelled_at is None)
        if await engine.read(NOTIFICATION_EXISTS, notification_id):
            return ScheduledState(notification_id, None, None, True)
        return None
