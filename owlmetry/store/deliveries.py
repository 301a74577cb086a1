"""The delivery queue: what the dispatcher asks of the database, with its SQL and row mapping.

Enqueue writes a request's content once and, in chunks of recipients each its own short
transaction, their inbox rows pointing at it (born deleted for a user who turned the inbox off
for the type; counted into their recipients' unread counts) and the pending deliveries each
recipient's group gets; a claim leases due deliveries to one dispatcher and reads what sending
them needs (the targets each channel's `Targets` name: devices of some device channels, or the
recipient's address); the answers (one row per target) and the deliveries' ends are saved
together; progress counts both. Mixed into `Store`, which sets `self.engine`. Must not
decide when to retry or how an answer maps to a status (the dispatcher's rules), nor know any
channel by name.

Where PostgreSQL has its own statement (its planner wants rows fetched by key, `= ANY`, and it
can do in one statement what SQLite does in two), both are built from the same fragments, so
each rule is written once.
"""

import asyncio
import dataclasses
import functools
import operator
from collections.abc import Mapping

import orjson

from owlmetry import push_options
from owlmetry.ids import new_ordered_id
from owlmetry.store.delivery_status import (
    RECORD_REMOVALS,
    RECORD_RETRIES,
    REMOVAL_COLUMNS,
    REMOVAL_TYPES,
    RETRY_COLUMNS,
    RETRY_TYPES,
    record_removals,
    record_retries,
    removal_rows,
    retry_rows,
)
from owlmetry.store.engine import Engine, RunNow, Steps
from owlmetry.store.rows import (
    Claim,
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    Progress,
    PushOutcome,
    PushRecord,
    PushTarget,
    RecipientGroup,
    TargetKind,
    Targets,
)
from owlmetry.store.unread_counts import BADGE, count_added

# ---- Enqueue ----------------------------------------------------------------------------------
# A request is written in chunks of recipients (`ENQUEUE_CHUNK`), each its own short
# transaction: its recipients' inbox rows, their unread counts and their pending deliveries,
# all or none; the content goes with the first chunk that writes a row. Between two chunks the
# writer is free (SQLite has one), so a device registration waits for one chunk, not for the
# whole request. $1 is the content's id, $2 the time; the batches come after: the inbox rows'
# (id, user_id, deleted_at), and the deliveries' (notification_id, channel).

# An inbox row per recipient that exists; `deleted_at` is set (to the time) when the user
# turned the inbox off for the type: the row is never listed or counted, yet the channels
# read what they send through it. What the unread counter needs of each row comes back. A row
# whose id exists is skipped (a scheduled send's release resumed after a crash, or run by two
# processes at once), so only rows written now are counted and get deliveries. The join with
# `users` is the rows' only check of their user (no foreign key, migration 14): on PostgreSQL
# it locks each user's row as a key check would, so a user's deletion (`delete_user`) waits
# for the chunk and then finds its rows, and a chunk that comes second skips the deleted user.
# SQLite's one writer does the same by itself; "WHERE true": it needs a WHERE between a join
# and ON CONFLICT to parse the upsert.
INSERT_NOTIFICATIONS = """
INSERT INTO notifications (id, user_id, content_id, deleted_at, created_at)
SELECT b.id, u.id, CAST($1 AS TEXT), CAST(b.deleted_at AS BIGINT), CAST($2 AS BIGINT)
FROM batch AS b JOIN users AS u ON u.id = b.user_id
{user_check}
ON CONFLICT (id) DO NOTHING
RETURNING id, user_id, read_at, deleted_at"""
USER_CHECK = {"sqlite": "WHERE true", "postgresql": "FOR KEY SHARE OF u"}

INBOX_ROW_TYPES = ("text", "text", "bigint")
DELIVERY_TYPES = ("text", "text")

# $1 the id; the content's fields follow (`content_fields`). A caller-chosen id may be stored
# already (an idempotent request taken over after a crash): it stays as it was.
CONTENT_COLUMNS = "id, type, title, body, link, data, team_id, push_options"
INSERT_CONTENT = f"""
INSERT INTO notification_contents ({CONTENT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO NOTHING"""

# A delivery starts pending and due at once.
INSERT_DELIVERIES = """\
INSERT INTO notification_deliveries (notification_id, channel, status, available_at, created_at)"""

ENQUEUE_NOTIFICATIONS = f"""
WITH batch (id, user_id, deleted_at) AS ({{batch}})
{INSERT_NOTIFICATIONS.format(user_check=USER_CHECK["sqlite"])}
"""

# The recipients' unread counts, in the chunk's transaction: the batch is the inserted rows'
# (user_id, read_at, deleted_at).
COUNT_ENQUEUED = f"""
WITH added (user_id, read_at, deleted_at) AS ({{batch}}){count_added("added")}
"""
ADDED_TYPES = ("text", "bigint", "bigint")

# $1 is the time; the batch of deliveries of notifications written comes after it.
ENQUEUE_DELIVERIES = f"""
WITH queue (notification_id, channel) AS ({{batch}})
{INSERT_DELIVERIES}
SELECT notification_id, channel, 'pending', CAST($1 AS BIGINT), CAST($1 AS BIGINT)
FROM queue
"""

# PostgreSQL does a chunk in one statement: the deliveries of recipients that do not exist fall
# out of the join with the rows inserted, and the content ($3..$9) is written when $10 says so
# and a row was. `{rows}` and `{queue}` are its two batches.
ENQUEUE_IN_ONE = f"""
WITH batch (id, user_id, deleted_at) AS ({{rows}}),
queue (notification_id, channel) AS ({{queue}}),
inserted AS ({INSERT_NOTIFICATIONS.format(user_check=USER_CHECK["postgresql"])}),
content AS (
    INSERT INTO notification_contents ({CONTENT_COLUMNS})
    SELECT $1, $3, $4, $5, $6, $7, $8, $9
    WHERE CAST($10 AS BOOLEAN) AND EXISTS (SELECT 1 FROM inserted)
    ON CONFLICT (id) DO NOTHING),
counted AS ({count_added("inserted")}),
queued AS (
    {INSERT_DELIVERIES}
    SELECT q.notification_id, q.channel, 'pending', $2, $2
    FROM queue AS q JOIN inserted AS i ON i.id = q.notification_id)
SELECT id FROM inserted
"""

# Recipients per chunk (benchmarks/RESULTS.md, "Big requests"): written in id order, 50,000
# recipients go in about as fast in chunks of 500 as in one transaction, and a chunk holds
# SQLite's writer for tens of ms, which is what a registration waits for at most.
ENQUEUE_CHUNK = 500
# SQLite's one writer: a chunk of 500 held it 20-30 ms under load (its own statements; the GIL
# shared with the event loop), what a registration waits for at its median; chunks of 100
# wait 4x less for no measurable loss of the enqueue's speed (benchmarks/RESULTS.md,
# "Registrations while producers enqueue"). Claims take the writer a piece at a time too.
SQLITE_WRITER_PIECE = 100

# PostgreSQL writes this many chunks of a request side by side once one of them has written
# the content (a chunk's rows are claimable as soon as it commits, and a claim skips a row whose
# content it cannot read): the database works on them on two cores while the server waits
# (SQLite has one writer). Their recipients differ, so they lock no row the other needs. A
# producer's request comes from the dispatcher's enqueue a slice of this many at a time.
ENQUEUE_SIDE_BY_SIDE = 2
# Recipients one `enqueue_groups` call writes at once at most (PostgreSQL).
ENQUEUE_AT_ONCE = ENQUEUE_CHUNK * ENQUEUE_SIDE_BY_SIDE

# PostgreSQL: a request this big is followed by an ANALYZE of the queue. Its planner picks the
# claim's plan from the table's statistics; taken while the queue was small (or empty), they
# make it read and sort every due delivery for each claim of 500 instead of walking the queue
# index in order: 330 ms instead of 37 per claim with 200,000 due, growing with the queue, so
# a million-device fan-out cost more per device than a small one. Autovacuum's ANALYZE comes
# after a tenth of the table changed and up to a minute later; this one samples a fixed number
# of rows (tens of ms) before the request's deliveries can be claimed.
ANALYZE_AFTER = 10_000
ANALYZE_QUEUE = "ANALYZE notification_deliveries"

# ---- Claims -----------------------------------------------------------------------------------

# The oldest due pending deliveries, leased to $1 until $3. `{only}` may narrow it to some
# notifications; `{lock}` is the engine's `skip_locked`. SQLite finds the rows chosen again by
# key; PostgreSQL by where they are (`ctid`), which the rows' locks, taken by the choice, keep
# in place until this update: no second index walk of 500 keys per claim.
CLAIM_DELIVERIES = {
    "sqlite": """
UPDATE notification_deliveries
SET claimed_by = $1, available_at = $3, attempts = attempts + 1
WHERE (notification_id, channel) IN (
    SELECT notification_id, channel FROM notification_deliveries
    WHERE status = 'pending' AND available_at <= $2 {only}
    ORDER BY available_at
    LIMIT $4 {lock})
RETURNING notification_id, channel, attempts
""",
    "postgresql": """
UPDATE notification_deliveries
SET claimed_by = $1, available_at = $3, attempts = attempts + 1
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM notification_deliveries
    WHERE status = 'pending' AND available_at <= $2 {only}
    ORDER BY available_at
    LIMIT $4 {lock}))
RETURNING notification_id, channel, attempts
""",
}

# PostgreSQL: the notifications of a batch of ids, each fetched by its key. The
# planner joined the batch with (or filtered by `= ANY`) the whole table whenever its statistics
# made it look small enough to read: a sequential scan of every notification for each claim's
# reads and each write of answers, a cost per device that grew with the table (RESULTS.md,
# "Fan-out on PostgreSQL"). A lateral subquery with OFFSET 0 is not flattened into a join, so
# each id is one lookup in the primary key, whatever the statistics say.
NOTIFICATIONS_BY_KEY = """({batch}) AS b (id)
CROSS JOIN LATERAL (SELECT * FROM notifications WHERE id = b.id OFFSET 0) AS n"""

# What sending a claimed notification needs of its row, and its recipient's unread count (the
# badge: the counter's row, whatever the size of the inbox). Not its content: the recipients of
# a request share one, which the store reads once (`CLAIMED_CONTENTS`) and keeps.
CLAIMED_CONTENT = f"n.id, n.user_id, n.content_id, {BADGE}"

# The claim's reads of notifications, by a batch of ids: joined with the batch (SQLite), or
# each fetched by key (PostgreSQL, NOTIFICATIONS_BY_KEY).
CLAIMED_NOTIFICATIONS = {
    "sqlite": f"""
WITH batch (id) AS ({{batch}})
SELECT {CLAIMED_CONTENT}
FROM batch AS b JOIN notifications AS n ON n.id = b.id
""",
    "postgresql": f"""
SELECT {CLAIMED_CONTENT}
FROM {NOTIFICATIONS_BY_KEY}
""",
}

# The contents of claimed notifications the store does not hold yet, by a batch of ids (the
# columns of CONTENT_COLUMNS).
CLAIMED_CONTENTS = """
WITH batch (id) AS ({batch})
SELECT c.id, c.type, c.title, c.body, c.link, c.data, c.team_id, c.push_options
FROM batch AS b JOIN notification_contents AS c ON c.id = b.id
"""
# Contents kept by a store for its claims: the requests being delivered now (a content is never
# changed once stored, so a kept one cannot be stale).
CONTENTS_KEPT = 64

# ---- A claim's targets (`Targets`): per kind of target, the columns of a `PushTarget` and
# where they come from, as `t` joined to the claimed notification `n`.

TARGET_COLUMNS = {
    TargetKind.DEVICES: "n.id, t.id, t.token, t.environment, t.platform",
    TargetKind.RECIPIENT: "n.id, t.id, t.email, NULL, NULL",
}

# The recipient's devices registered with the device channels $1 (a batch of one column) that
# the delivery channel serves; or the recipient user itself.
TARGET_SOURCES = {
    "sqlite": {
        TargetKind.DEVICES: """JOIN user_devices AS t ON t.user_id = n.user_id
    AND t.channel IN (SELECT value FROM json_each($1))""",
        TargetKind.RECIPIENT: "JOIN users AS t ON t.id = n.user_id",
    },
    "postgresql": {
        TargetKind.DEVICES: """JOIN user_devices AS t ON t.user_id = n.user_id
    AND t.channel = ANY($1::text[])""",
        TargetKind.RECIPIENT: "JOIN users AS t ON t.id = n.user_id",
    },
}

# For a delivery claimed again: only the targets no earlier attempt has an answer for.
UNANSWERED = """NOT EXISTS (
    SELECT 1 FROM notification_pushes AS p
    WHERE p.notification_id = n.id AND p.device_id = t.id)"""

# The claimed notifications, by a batch of ids after the source's parameters: joined with the
# batch (SQLite), or each fetched by key (PostgreSQL, NOTIFICATIONS_BY_KEY).
CLAIMED_TARGETS = {
    "sqlite": """
WITH batch (id) AS ({batch})
SELECT {columns}
FROM batch AS b
JOIN notifications AS n ON n.id = b.id
{source}
WHERE {unanswered}
""",
    "postgresql": f"""
SELECT {{columns}}
FROM {NOTIFICATIONS_BY_KEY}
{{source}}
WHERE {{unanswered}}
""",
}


@functools.cache
def targets_statement(engine: str, kind: TargetKind, resumed: bool) -> str:
    """The claim's read of `kind` targets: all of them on a first attempt (nothing can be on
    record yet), the unanswered ones on a later one."""
    return CLAIMED_TARGETS[engine].format(
        columns=TARGET_COLUMNS[kind], source=TARGET_SOURCES[engine][kind],
        unanswered=UNANSWERED if resumed else "true",
        batch="{batch}")  # left for `run_batched`


EARLIER_OUTCOMES = """
WITH batch (id, channel) AS ({batch})
SELECT p.notification_id, p.channel, p.outcome, count(*)
FROM batch AS b
JOIN notification_pushes AS p ON p.notification_id = b.id AND p.channel = b.channel
GROUP BY p.notification_id, p.channel, p.outcome
"""

# Returns the leases renewed (the batch's names differ from the table's: SQLite's RETURNING
# takes the updated table's columns unqualified).
RENEW_LEASES = """
WITH batch (held_id, held_channel, owner, until) AS ({batch})
UPDATE notification_deliveries AS d SET available_at = b.until
FROM batch AS b
WHERE d.notification_id = b.held_id AND d.channel = b.held_channel
  AND d.claimed_by = b.owner AND d.status = 'pending'
RETURNING notification_id, channel
"""

# ---- Answers and ends -------------------------------------------------------------------------

# A dead token's device `d` goes, unless it was registered again after the provider gave up on
# it (`b`: the answer's device_id and invalid_since); what the removal's audit row needs of it
# comes back.
DEAD = "b.invalid_since IS NULL OR d.last_seen_at <= b.invalid_since"
GONE_COLUMNS = "id, user_id, channel, platform, environment, token"
DEAD_TYPES = ("text", "bigint")

# SQLite: the devices deleted, then which of the batch's are still there (`EXISTING_DEVICES`).
DELETE_DEAD_DEVICES = f"""
WITH batch (device_id, invalid_since) AS ({{batch}})
DELETE FROM user_devices WHERE id IN (
    SELECT d.id FROM batch AS b JOIN user_devices AS d ON d.id = b.device_id
    WHERE {DEAD})
RETURNING {GONE_COLUMNS}
"""

EXISTING_DEVICES = """
WITH batch (id) AS ({batch})
SELECT d.id FROM batch AS b JOIN user_devices AS d ON d.id = b.id
"""

# PostgreSQL does both in one statement: the rows deleted (`kept` false), then each device of
# the batch found and not dead by any of its answers (`kept` true).
REMOVE_DEAD_DEVICES = f"""
WITH batch (device_id, invalid_since) AS ({{batch}}),
found AS (
    SELECT d.id, {DEAD} AS dead
    FROM batch AS b JOIN user_devices AS d ON d.id = b.device_id),
gone AS (
    DELETE FROM user_devices WHERE id IN (SELECT id FROM found WHERE dead)
    RETURNING {GONE_COLUMNS})
SELECT {GONE_COLUMNS}, false AS kept FROM gone
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, NULL, true FROM found GROUP BY id HAVING NOT bool_or(dead)
"""

# (Each column costs every answer of every fan-out: the status route's platform and
# environment are read from the registry and the removals' audit rows instead.)
PUSH_COLUMNS = """notification_id, device_id, channel, outcome, status, reason, answered_at,
    apns_id, attempted_at"""
PUSH_TYPES = ("text", "text", "text", "text", "integer", "text", "bigint", "text", "bigint")
END_COLUMNS = """notification_id, channel, status, reason, available_at, claimed_by, finished_at,
    delivered, removed, failed, skipped"""
END_TYPES = ("text", "text", "text", "text", "bigint", "text", "bigint",
             "integer", "integer", "integer", "integer")


def record_pushes(notifications: str) -> str:
    """The answers of the rows `pushes`, once per device, of the notifications `n` that
    `notifications` finds, so that a recipient deleted mid-fan-out costs its records only."""
    return f"""
INSERT INTO notification_pushes ({PUSH_COLUMNS})
SELECT p.* FROM {notifications}
ON CONFLICT (notification_id, device_id) DO NOTHING"""


def end_deliveries(where: str) -> str:
    """The rows `ends` applied. Only the lease holder may end a delivery: a process that lost
    its lease changes nothing. `claimed_by` stays, naming the dispatcher that did the work last."""
    return f"""
UPDATE notification_deliveries AS d
SET status = e.status, reason = e.reason, available_at = e.available_at,
    finished_at = e.finished_at, delivered = e.delivered, removed = e.removed,
    failed = e.failed, skipped = e.skipped
FROM ends AS e
WHERE {where}d.notification_id = e.notification_id AND d.channel = e.channel
  AND d.claimed_by = e.claimed_by AND d.status = 'pending'"""


# SQLite writes the answers and the ends in statements of their own ("true": it needs a WHERE
# between a join and ON CONFLICT to parse the upsert).
RECORD_PUSHES = f"WITH pushes ({PUSH_COLUMNS}) AS ({{batch}})" + record_pushes(
    "pushes AS p JOIN notifications AS n ON n.id = p.notification_id WHERE true")
END_DELIVERIES = f"WITH ends ({END_COLUMNS}) AS ({{batch}})" + end_deliveries("")

# PostgreSQL writes them in one statement (one round trip, atomic), with the retries' and the
# removals' rows when there are any (`record_answers`). Each answer's notification and each
# end's delivery is fetched by key (see NOTIFICATIONS_BY_KEY; the ends, joined to a batch of
# unknown size, were found by reading the whole queue: 24-53 ms a write, benchmarks/RESULTS.md
# session 13).
PUSHES_BY_KEY = """pushes AS p
CROSS JOIN LATERAL (
    SELECT 1 FROM notifications AS n WHERE n.id = p.notification_id OFFSET 0) AS n"""
ENDS_BY_KEY = """d.notification_id = ANY(ARRAY(SELECT notification_id FROM ends))
  AND """


@functools.cache
def record_answers(pushes: str, ends: str, retries: str | None = None,
                   removals: str | None = None) -> str:
    """PostgreSQL's statement of a write of answers, from its batches' SQL (None: no such rows)."""
    parts = [f"pushes ({PUSH_COLUMNS}) AS ({pushes})", f"ends ({END_COLUMNS}) AS ({ends})",
             f"recorded AS ({record_pushes(PUSHES_BY_KEY)})"]
    if retries is not None:
        parts += [f"retries ({RETRY_COLUMNS}) AS ({retries})",
                  f"retried AS ({record_retries('retries')})"]
    if removals is not None:
        parts += [f"removals ({REMOVAL_COLUMNS}) AS ({removals})",
                  f"audited AS ({record_removals('removals')})"]
    return "WITH " + ",\n".join(parts) + end_deliveries(ENDS_BY_KEY)

# ---- Progress ---------------------------------------------------------------------------------

DELIVERY_PROGRESS = """
WITH batch (id) AS ({batch})
SELECT d.status, count(*)
FROM batch AS b JOIN notification_deliveries AS d ON d.notification_id = b.id
GROUP BY d.status
"""

PUSH_PROGRESS = """
WITH batch (id) AS ({batch})
SELECT p.outcome, count(*)
FROM batch AS b JOIN notification_pushes AS p ON p.notification_id = b.id
GROUP BY p.outcome
"""


@functools.cache
def claim_statement(engine: str, lock: str, only: str = "") -> str:
    return CLAIM_DELIVERIES[engine].format(only=only, lock=lock)


@functools.cache
def enqueue_in_one(rows: str, queue: str) -> str:
    return ENQUEUE_IN_ONE.format(rows=rows, queue=queue)


def chunk_rows(part: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """A chunk's inbox rows and its deliveries, from its recipients (`enqueue_groups`)."""
    return ([recipient[:3] for recipient in part],
            [(notification_id, channel)
             for notification_id, _, _, channels in part for channel in channels])


def chunked(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def record_answers_call(engine: Engine, owner: str, pushes: list[PushRecord],
                        ends: list[DeliveryEnd], now: int, retries: list[PushRecord] = (),
                        removals: list[tuple] = ()) -> tuple:
    """PostgreSQL's statement and arguments that record `pushes` and apply `ends` at once, and
    write `retries` (RETRY records) and `removals` (`removal_rows`)."""
    batches, args = [], []
    for types, rows in ((PUSH_TYPES, push_rows(pushes, now)),
                        (END_TYPES, end_rows(ends, owner, now)),
                        (RETRY_TYPES, retry_rows(retries, now) if retries else None),
                        (REMOVAL_TYPES, removals or None)):
        if rows is None:
            batches.append(None)
            continue
        batch, params = engine.packed_batch(types, rows, len(args) + 1)
        batches.append(batch)
        args.extend(params)
    return (record_answers(*batches), *args)


class Deliveries:
    engine: Engine

    def __init__(self):
        super().__init__()
        self._contents: dict[str, NotificationContent] = {}  # by id (CONTENTS_KEPT)

    async def enqueue_notifications(
        self, recipients: list[tuple[str, str]], content: NotificationContent,
        channels: list[str], now: int,
    ) -> list[str]:
        """`enqueue_groups` for recipients (notification_id, user_id) who all get a listed
        inbox row and a delivery on each of `channels`; the ids written, in order."""
        written = await self.enqueue_groups(
            [RecipientGroup(tuple(channels), True, recipients)], content, now)
        await self.enqueued(len(written))
        return [notification_id for notification_id, _ in recipients
                if notification_id in written]

    async def enqueue_groups(
        self, groups: list[RecipientGroup], content: NotificationContent, now: int,
        chunk: int | None = None, *, content_id: str | None = None,
        content_written: bool = False,
    ) -> set[str]:
        """Write the content once, and each recipient's inbox row pointing at it with their
        group's pending deliveries, `chunk` recipients per transaction (default ENQUEUE_CHUNK).
        Returns the ids written; users that do not exist, and notification ids that exist
        already (a scheduled send's release resumed), are skipped.

        Each recipient is written whole or not at all; chunks are visible (and delivered) as
        they commit (on PostgreSQL, ENQUEUE_SIDE_BY_SIDE at a time once the content is in). If
        the request fails between chunks, the recipients of the chunks committed are notified
        and the rest are not; an exception says it failed, and a
        retry of the whole request notifies the first ones again (at least once).

        A request written in several calls passes the same `content_id` to each, and
        `content_written` once a call has written a row (and so the content), or when the
        content was stored before (a scheduled send's). A caller may choose `content_id` (an
        idempotent request's) and find it stored already."""
        content_id = content_id or new_ordered_id(now)
        fields = content_fields(content)
        # In id order: each chunk's rows land side by side in the id-keyed indexes, instead of
        # a chunk's worth of pages all over the request's range rewritten by every commit.
        recipients = sorted(
            ((notification_id, user_id, None if group.listed else now, group.channels)
             for group in groups for notification_id, user_id in group.recipients),
            key=operator.itemgetter(0))
        await asyncio.sleep(0)  # a turn for requests (this took the event loop for a while)
        size = chunk or (ENQUEUE_CHUNK if self.engine.name == "postgresql"
                         else min(ENQUEUE_CHUNK, SQLITE_WRITER_PIECE))
        parts = chunked(recipients, max(1, size))
        side_by_side = ENQUEUE_SIDE_BY_SIDE if self.engine.name == "postgresql" else 1
        written: set[str] = set()
        while parts:
            with_content = not (written or content_written)
            width = 1 if with_content else side_by_side
            for done in await asyncio.gather(*(
                    self._enqueue_chunk(content_id, fields, with_content, rows, queue, now)
                    for rows, queue in map(chunk_rows, parts[:width]))):
                written |= done
            parts = parts[width:]
        return written

    async def enqueued(self, count: int) -> None:
        """A request of `count` recipients is in the queue (all its `enqueue_groups` calls
        done): a big one is followed by PostgreSQL's ANALYZE of the queue (`ANALYZE_AFTER`)."""
        if self.engine.name == "postgresql" and count >= ANALYZE_AFTER:
            await self.engine.write_bulk(ANALYZE_QUEUE)

    async def _enqueue_chunk(self, content_id: str, fields: tuple, with_content: bool,
                             rows: list[tuple], queue: list[tuple], now: int) -> set[str]:
        """One chunk in one transaction; `with_content`: no row of the content is written yet."""
        engine = self.engine
        if engine.name == "postgresql":
            first = 4 + len(fields)  # after the id, the time, the fields and the flag
            inbox, inbox_args = engine.packed_batch(INBOX_ROW_TYPES, rows, first)
            deliveries, delivery_args = engine.packed_batch(
                DELIVERY_TYPES, queue, first + len(INBOX_ROW_TYPES))
            return {row[0] for row in await engine.write_bulk(
                enqueue_in_one(inbox, deliveries), content_id, now, *fields, with_content,
                *inbox_args, *delivery_args)}

        def write_chunk(run: RunNow) -> set[str]:
            inserted = engine.run_batched_now(
                run, ENQUEUE_NOTIFICATIONS, INBOX_ROW_TYPES, rows, content_id, now)
            if not inserted:
                return set()
            if with_content:
                run(INSERT_CONTENT, content_id, *fields)
            engine.run_batched_now(run, COUNT_ENQUEUED, ADDED_TYPES,
                                   [tuple(row[1:]) for row in inserted])
            written = {row[0] for row in inserted}
            engine.run_batched_now(run, ENQUEUE_DELIVERIES, DELIVERY_TYPES,
                                   [item for item in queue if item[0] in written], now)
            return written

        return await engine.in_one_step(write_chunk, bulk=True)

    async def claim_deliveries(
        self, owner: str, now: int, lease_ms: int, limit: int,
        only: list[str] | None = None, targets: Mapping[str, Targets] | None = None,
    ) -> list[Claim]:
        """Take up to `limit` pending deliveries whose time has come (of the notifications in
        `only`, if given) under a lease held by `owner`. No two owners hold one at a time.

        `targets` says, per delivery channel, what its claims send to (`Targets`); a delivery
        of a channel not in it comes with no targets."""
        engine = self.engine
        if only is None and engine.name == "sqlite":
            claimed = []
            while len(claimed) < limit:  # the writer a piece at a time (SQLITE_WRITER_PIECE)
                piece = min(limit - len(claimed), SQLITE_WRITER_PIECE)
                taken = await engine.write_lease(claim_statement(engine.name, engine.skip_locked), owner, now,
                                                 now + lease_ms, piece)
                claimed += taken
                if len(taken) < piece:
                    break  # no more are due
        elif only is None:
            claimed = await engine.write_lease(claim_statement(engine.name, engine.skip_locked),
                                               owner, now, now + lease_ms, limit)
        else:
            batch, batch_args = engine.packed_batch(("text",), [(i,) for i in only], 5)
            claimed = await engine.write_lease(
                claim_statement(engine.name, engine.skip_locked,
                                f"AND notification_id IN ({batch})"),
                owner, now, now + lease_ms, limit, *batch_args)
        if not claimed:
            return []
        return await self._claims(claimed, targets or {})

    async def _claims(self, claimed: list, sources: Mapping[str, Targets]) -> list[Claim]:
        engine = self.engine
        # Only a delivery claimed before can have answers on record.
        again = [(n, c) for n, c, attempts in claimed if attempts > 1]
        ids_by_read: dict[tuple[str, bool], list[tuple[str]]] = {}
        for notification_id, channel, attempts in claimed:
            if channel in sources:
                ids_by_read.setdefault((channel, attempts > 1), []).append((notification_id,))
        notification_rows, earlier_rows, *target_rows = await asyncio.gather(
            engine.run_batched(engine.read_bulk, CLAIMED_NOTIFICATIONS[engine.name], ("text",),
                               list({(notification_id,) for notification_id, _, _ in claimed})),
            engine.run_batched(engine.read_bulk, EARLIER_OUTCOMES, ("text", "text"), again),
            *(self._read_targets(sources[channel], resumed, ids)
              for (channel, resumed), ids in ids_by_read.items()))
        notifications = {row[0]: row[1:] for row in notification_rows}
        contents = await self._contents_of({row[2] for row in notification_rows})
        targets: dict[tuple[str, str], list[PushTarget]] = {}
        for (channel, _), rows in zip(ids_by_read, target_rows):
            for notification_id, device_id, token, environment, platform in rows:
                targets.setdefault((notification_id, channel), []).append(
                    PushTarget(device_id, token, environment, platform))
        earlier: dict[tuple, dict[PushOutcome, int]] = {}
        for notification_id, channel, outcome, count in earlier_rows:
            earlier.setdefault((notification_id, channel), {})[PushOutcome(outcome)] = count
        claims = []
        for notification_id, channel, attempts in claimed:
            row = notifications.get(notification_id)
            if row is None:  # the recipient was deleted since
                continue
            user_id, content_id, unread = row
            content = contents.get(content_id)
            if content is None:  # removed with its last recipient meanwhile
                continue
            # The recipients of one request share one content object (a channel may build its
            # message once for all of them).
            claims.append(Claim(notification_id, channel, attempts, user_id, content, unread,
                                targets.get((notification_id, channel), []),
                                earlier.get((notification_id, channel), {})))
        return claims

    async def _contents_of(self, ids: set[str]) -> dict[str, NotificationContent]:
        """The contents of these ids, from those kept or read now (and then kept)."""
        kept = self._contents
        found = {content_id: kept[content_id] for content_id in ids if content_id in kept}
        if len(found) < len(ids):
            rows = await self.engine.run_batched(
                self.engine.read_bulk, CLAIMED_CONTENTS, ("text",),
                [(content_id,) for content_id in ids if content_id not in found])
            if len(kept) + len(rows) > CONTENTS_KEPT:
                kept.clear()
            for row in rows:
                found[row[0]] = kept[row[0]] = content_from_columns(row[1:])
        return found

    def _read_targets(self, source: Targets, resumed: bool, ids: list[tuple[str]]):
        engine = self.engine
        statement = targets_statement(engine.name, source.kind, resumed)
        if source.kind is TargetKind.RECIPIENT:
            return engine.run_batched(engine.read_bulk, statement, ("text",), ids)
        served = engine.batch_args([(channel,) for channel in source.device_channels], 1)
        return engine.run_batched(engine.read_bulk, statement, ("text",), ids, *served)

    async def renew_leases(self, owner: str, keys: list[tuple[str, str]],
                           until: int) -> set[tuple[str, str]]:
        """Extend the leases `owner` still holds on these (notification_id, channel); returns
        the ones it held (the others ended, or another owner took them)."""
        rows = [(notification_id, channel, owner, until) for notification_id, channel in keys]
        renewed = await self.engine.run_batched(self.engine.write_lease, RENEW_LEASES,
                                                ("text", "text", "text", "bigint"), rows)
        return {(notification_id, channel) for notification_id, channel in renewed}

    async def save_outcomes(
        self, owner: str, pushes: list[PushRecord], ends: list[DeliveryEnd], now: int
    ) -> list[PushRecord]:
        """In one transaction: delete the dead tokens' devices (each leaving its audit row),
        record the pushes (a RETRY record: the device waits for the next attempt, counted in
        `notification_push_retries`), and end (with their devices counted) or re-queue the
        deliveries `owner` holds. Returns the records as stored: a dead token whose
        device was registered again after `invalid_since` is kept, and its record says so.
        Only `user_devices` rows are ever deleted, by device id: a RECIPIENT channel's records
        (a user id in `device_id`, `Targets`) can match none."""
        engine = self.engine
        # `==`, not `is`: a caller may pass the plain strings the enums stand for.
        removed, retry = PushOutcome.REMOVED, PushOutcome.RETRY
        dead = [p for p in pushes if p.outcome == removed]
        # A RETRY record is a device waiting for the delivery's next attempt (the status
        # route's): kept apart, never an answer.
        retries = [p for p in pushes if p.outcome == retry]
        if retries:
            pushes = [p for p in pushes if p.outcome != retry]
        if engine.name == "sqlite":
            return await engine.run_steps(
                answer_steps(engine, owner, pushes, ends, dead, retries, now), bulk=True)
        if not dead:  # one statement
            await engine.write_bulk(*record_answers_call(engine, owner, pushes, ends, now, retries))
            return pushes
        return await engine.run_steps(
            removal_steps(engine, owner, pushes, ends, dead, retries, now), bulk=True)

    async def progress(self, notification_ids: list[str]) -> Progress:
        engine = self.engine
        rows = [(notification_id,) for notification_id in notification_ids]
        deliveries = await engine.run_batched(engine.read_bulk, DELIVERY_PROGRESS, ("text",), rows)
        pushes = await engine.run_batched(engine.read_bulk, PUSH_PROGRESS, ("text",), rows)
        return Progress({DeliveryStatus(status): count for status, count in deliveries},
                        {PushOutcome(outcome): count for outcome, count in pushes})


def answer_steps(engine: Engine, owner: str, pushes: list[PushRecord], ends: list[DeliveryEnd],
                 dead: list[PushRecord], retries: list[PushRecord], now: int) -> Steps:
    """SQLite's `save_outcomes`, statement by statement (`Engine.run_steps`: one step of the
    writer's, whatever the answers); returns the records as stored."""
    if retries:
        yield engine.batch_call(RECORD_RETRIES, RETRY_TYPES, retry_rows(retries, now), ())
    if dead:
        gone = yield engine.batch_call(DELETE_DEAD_DEVICES, DEAD_TYPES, dead_rows(dead), ())
        if gone:
            yield engine.batch_call(RECORD_REMOVALS, REMOVAL_TYPES,
                                    removal_rows(gone, dead, now), ())
        existing = yield engine.batch_call(EXISTING_DEVICES, ("text",),
                                           [(p.device_id,) for p in dead], ())
        pushes, ends = with_kept(pushes, ends, {row[0] for row in existing})
    piece = engine.rows_per_statement or max(len(pushes), len(ends), 1)
    for rows in chunked(push_rows(pushes, now), piece):
        yield engine.batch_call(RECORD_PUSHES, PUSH_TYPES, rows, ())
    for rows in chunked(end_rows(ends, owner, now), piece):
        yield engine.batch_call(END_DELIVERIES, END_TYPES, rows, ())
    return pushes


def removal_steps(engine: Engine, owner: str, pushes: list[PushRecord],
                  ends: list[DeliveryEnd], dead: list[PushRecord], retries: list[PushRecord],
                  now: int) -> Steps:
    """PostgreSQL's `save_outcomes` when devices are to be deleted: two statements in one
    transaction (the deletion, whose rows the second one's audit rows and records need; then
    everything else); returns the records as stored."""
    rows = yield engine.batch_call(REMOVE_DEAD_DEVICES, DEAD_TYPES, dead_rows(dead), ())
    gone = [tuple(row)[:-1] for row in rows if not row[-1]]
    pushes, ends = with_kept(pushes, ends, {row[0] for row in rows if row[-1]})
    yield record_answers_call(engine, owner, pushes, ends, now, retries,
                              removal_rows(gone, dead, now))
    return pushes


def dead_rows(dead: list[PushRecord]) -> list[tuple]:
    return [(p.device_id, p.invalid_since) for p in dead]


def with_kept(pushes: list[PushRecord], ends: list[DeliveryEnd],
              kept: set[str]) -> tuple[list[PushRecord], list[DeliveryEnd]]:
    """The records and ends as stored when the devices `kept` outlived their dead tokens'
    answers (`kept_record`, `recount_kept`)."""
    if not kept:
        return pushes, ends
    removed = PushOutcome.REMOVED
    kept_records = [p for p in pushes if p.device_id in kept and p.outcome == removed]
    return ([kept_record(p) if p.device_id in kept and p.outcome == removed else p
             for p in pushes], recount_kept(ends, kept_records))


def content_fields(content: NotificationContent) -> tuple:
    """The content's columns after its id, as stored (`data` as JSON text)."""
    data = orjson.dumps(content.data).decode() if content.data is not None else None
    return (content.type, content.title, content.body, content.link, data, content.team_id,
            push_options.stored(content.options))


def content_from_columns(columns: tuple) -> NotificationContent:
    """The content `content_fields` stored, from its columns after its id."""
    type_, title, body, link, data, team_id, options = columns
    return NotificationContent(type_, title, body, link, orjson.loads(data) if data else None,
                               team_id, push_options.from_stored(options))


# The enums as plain strings: SQLite's driver binds a `str` subclass only after looking for an
# adapter and a `__conform__` on it, ~3,000 instructions a value.
def push_rows(pushes: list[PushRecord], now: int) -> list[tuple]:
    return [(p.notification_id, p.device_id, p.channel, str(p.outcome), p.status, p.reason, now,
             p.apns_id, p.attempted_at) for p in pushes]


NO_OUTCOMES = (None, None, None, None)


def end_rows(ends: list[DeliveryEnd], owner: str, now: int) -> list[tuple]:
    pending = DeliveryStatus.PENDING
    return [(e.notification_id, e.channel, str(e.status), e.reason,
             e.retry_at if e.status == pending else now, owner,
             None if e.status == pending else now, *(e.outcomes or NO_OUTCOMES)) for e in ends]


def recount_kept(ends: list[DeliveryEnd], kept: list[PushRecord]) -> list[DeliveryEnd]:
    """The ends' outcome counts with each kept dead token (`kept_record`) a failure, not a
    removal (an end comes in the batch of its last answers, or a later one: then it is left)."""
    moved: dict[tuple[str, str], int] = {}
    for record in kept:
        key = (record.notification_id, record.channel)
        moved[key] = moved.get(key, 0) + 1
    recounted = []
    for end in ends:
        count = moved.get((end.notification_id, end.channel))
        if count and end.outcomes is not None:
            delivered, removed, failed, skipped = end.outcomes
            end = dataclasses.replace(end, outcomes=(
                delivered, max(0, removed - count), failed + count, skipped))
        recounted.append(end)
    return recounted


def kept_record(record: PushRecord) -> PushRecord:
    """A dead token's record whose device was registered again after APNs gave up on it."""
    return dataclasses.replace(record, outcome=PushOutcome.FAILED,
                               reason=f"{record.reason} (registered again since; kept)")
