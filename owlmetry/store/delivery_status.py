"""Delivery status for producers: what happened to a notification on each channel and device,
and why a device is gone.

Reads one or many notifications' deliveries with their devices' outcomes counted, and their
devices' answers a page at a time by the keyset (notification_id, device_id), which is the
push records' primary key: a page is an index range, whatever the fan-out's size. Writes, in
the transaction of `Deliveries.save_outcomes` (never a statement per answer): the devices
waiting for another attempt (`RECORD_RETRIES`) and the audit rows of devices removed because
of a provider's answer (`RECORD_REMOVALS`). Lists and prunes those audit rows.
Mixed into `Store`, which sets `self.engine`. Must not decide what an answer means (the
dispatcher's and providers' rules) nor how a status is shown (http/delivery_status.py).
"""

from collections.abc import Sequence

from owlmetry.redact import mask
from owlmetry.store.engine import Engine
from owlmetry.store.rows import (
    RECORDED_OUTCOMES,
    ChannelStatus,
    DeliveryStatus,
    DeviceRemoval,
    DeviceStatus,
    NotificationStatus,
    PushRecord,
)

# Devices counted as waiting for another attempt (they have no final answer yet).
RETRYING = "retrying"

# ---- Writes, inside save_outcomes' transaction ------------------------------------------------

RETRY_TYPES = ("text", "text", "text", "text", "text", "integer", "text", "bigint", "bigint")

RETRY_COLUMNS = """notification_id, device_id, channel, platform, environment, status, reason,
    attempted_at, answered_at"""


def record_retries(source: str) -> str:
    """One row per device waiting for its delivery's next attempt, from the rows `source`
    (RETRY_COLUMNS): the first attempt's time stays, the count and the last answer move on."""
    return f"""
INSERT INTO notification_push_retries (notification_id, device_id, channel, platform,
    environment, attempts, first_attempt_at, status, reason, answered_at)
SELECT notification_id, device_id, channel, platform, environment, 1,
       COALESCE(attempted_at, answered_at), status, reason, answered_at
FROM {source} WHERE true
ON CONFLICT (notification_id, device_id) DO UPDATE
SET attempts = notification_push_retries.attempts + 1, status = excluded.status,
    reason = excluded.reason, answered_at = excluded.answered_at"""


RECORD_RETRIES = f"WITH batch ({RETRY_COLUMNS}) AS ({{batch}})" + record_retries("batch")

REMOVAL_COLUMNS = """device_id, user_id, channel, platform, environment, token_hint,
    notification_id, status, reason, provider_at, removed_at"""
REMOVAL_TYPES = ("text", "text", "text", "text", "text", "text", "text", "integer", "text",
                 "bigint", "bigint")


def record_removals(source: str) -> str:
    """An audit row per device removed, from the rows `source` (REMOVAL_COLUMNS)."""
    return f"""
INSERT INTO device_removals ({REMOVAL_COLUMNS})
SELECT * FROM {source} WHERE true
ON CONFLICT (device_id) DO NOTHING"""


RECORD_REMOVALS = f"WITH batch ({REMOVAL_COLUMNS}) AS ({{batch}})" + record_removals("batch")


def retry_rows(retries: list[PushRecord], now: int) -> list[tuple]:
    """RECORD_RETRIES' rows: the devices whose answer was transient."""
    return [(r.notification_id, r.device_id, r.channel, r.platform, r.environment, r.status,
             r.reason, r.attempted_at, now) for r in retries]


def removal_rows(gone: Sequence, dead: list[PushRecord], now: int) -> list[tuple]:
    """RECORD_REMOVALS' rows: an audit row per device just deleted (`gone`: the rows DELETE ...
    RETURNING gave: id, user_id, channel, platform, environment, token), from the answer that
    removed it."""
    why = {}
    for record in dead:
        why.setdefault(record.device_id, record)
    rows = []
    for device_id, user_id, channel, platform, environment, token in gone:
        record = why[device_id]
        rows.append((device_id, user_id, channel, platform, environment, mask(token),
                     record.notification_id, record.status, record.reason, record.provider_at,
                     now))
    return rows


# ---- Reads ------------------------------------------------------------------------------------

def ids_in(engine: Engine, first: int) -> str:
    """`IN` the batch of ids at `$first`: PostgreSQL's by key (`= ANY`), SQLite's joined."""
    if engine.name == "postgresql":
        return f"= ANY(${first}::text[])"
    return f"IN ({engine.batch(('text',), first)})"


# $1 the ids. A notification without deliveries (none chosen) still comes back, once. A
# finished delivery kept its devices by outcome with its end.
CHANNELS = """
SELECT n.id, n.user_id, n.created_at, d.channel, d.status, d.reason, d.attempts, d.created_at,
       d.finished_at, d.available_at, d.delivered, d.removed, d.failed, d.skipped
FROM notifications AS n
LEFT JOIN notification_deliveries AS d ON d.notification_id = n.id
WHERE n.id {ids}
ORDER BY n.id, d.channel
"""

# Devices by outcome, per notification and channel, counted from the answers: for deliveries
# still pending (or ended before migration 12); devices waiting for another attempt count as
# RETRYING.
OUTCOME_COUNTS = f"""
SELECT p.notification_id, p.channel, p.outcome, count(*)
FROM notification_pushes AS p WHERE p.notification_id {{ids}}
GROUP BY p.notification_id, p.channel, p.outcome
UNION ALL
SELECT r.notification_id, r.channel, '{RETRYING}', count(*)
FROM notification_push_retries AS r WHERE r.notification_id {{ids}}
  AND NOT EXISTS (SELECT 1 FROM notification_pushes AS p
                  WHERE p.notification_id = r.notification_id AND p.device_id = r.device_id)
GROUP BY r.notification_id, r.channel
"""

# A page of devices after the keyset ($1, $2), at most $3; $4 the batch of the notifications
# after $1's. Each part is an index range of a primary key read in order, stopped at $3: the
# rest of $1's devices, then the later notifications' (answered, and waiting for another
# attempt; a device in both is one). So a page costs the same wherever it starts.
def page_part(table: str, where: str, order: str) -> str:
    return f"""SELECT notification_id, device_id FROM (
        SELECT x.notification_id, x.device_id FROM {table} AS x
        WHERE {where} ORDER BY {order} LIMIT $3) AS part"""


REST_OF_FIRST = "x.notification_id = $1 AND x.device_id > $2"
LATER = "x.notification_id {ids}"
ANSWERED = f"""{page_part("notification_pushes", REST_OF_FIRST, "x.device_id")}
    UNION ALL
    {page_part("notification_pushes", LATER, "x.notification_id, x.device_id")}"""
# Devices waiting for another attempt have a row of their own only while a delivery is pending.
WAITING = f"""{ANSWERED}
    UNION
    {page_part("notification_push_retries", REST_OF_FIRST, "x.device_id")}
    UNION
    {page_part("notification_push_retries", LATER, "x.notification_id, x.device_id")}"""
DEVICE_PAGE = f"""
WITH page AS (
    {{parts}}
    ORDER BY notification_id, device_id LIMIT $3)
SELECT g.notification_id, g.device_id, COALESCE(p.channel, r.channel),
       COALESCE(r.platform, m.platform, d.platform),
       COALESCE(r.environment, m.environment, d.environment),
       COALESCE(p.outcome, '{RETRYING}'),
       CASE WHEN p.device_id IS NULL THEN r.status ELSE p.status END,
       CASE WHEN p.device_id IS NULL THEN r.reason ELSE p.reason END,
       p.apns_id,
       COALESCE(r.attempts, 0) + CASE WHEN p.device_id IS NULL THEN 0 ELSE 1 END,
       COALESCE(r.first_attempt_at, p.attempted_at),
       COALESCE(p.answered_at, r.answered_at),
       {", ".join("m." + c.strip() for c in REMOVAL_COLUMNS.split(","))}
FROM page AS g
LEFT JOIN notification_pushes AS p
    ON p.notification_id = g.notification_id AND p.device_id = g.device_id
LEFT JOIN notification_push_retries AS r
    ON r.notification_id = g.notification_id AND r.device_id = g.device_id
LEFT JOIN device_removals AS m ON m.device_id = g.device_id AND p.outcome = 'removed'
LEFT JOIN user_devices AS d ON d.id = g.device_id
ORDER BY g.notification_id, g.device_id
"""

# $1 since (ms), $2 the keyset's device id, $3 the most rows.
REMOVALS = f"""
SELECT {REMOVAL_COLUMNS} FROM device_removals
WHERE removed_at > $1 OR (removed_at = $1 AND device_id > $2)
ORDER BY removed_at, device_id
LIMIT $3
"""

# $1 the cutoff, $2 the batch's size.
PRUNE_REMOVALS = """
DELETE FROM device_removals WHERE device_id IN (
    SELECT device_id FROM device_removals WHERE removed_at < $1
    ORDER BY removed_at LIMIT $2)
"""


class DeliveryStatusReads:
    engine: Engine

    async def notification_statuses(self, ids: list[str]) -> dict[str, NotificationStatus]:
        """The notifications of `ids` that exist, by id, each with its channels' deliveries
        and their devices counted by outcome."""
        engine = self.engine
        if not ids:
            return {}
        rows = await engine.read(CHANNELS.format(ids=ids_in(engine, 1)),
                                 *engine.batch_args([(i,) for i in ids], 1))
        # Only deliveries without kept counts (pending ones) have their answers counted.
        uncounted = sorted({row[0] for row in rows if row[3] is not None and row[10] is None})
        counts: dict[tuple[str, str], dict[str, int]] = {}
        if uncounted:
            counted = await engine.read(OUTCOME_COUNTS.format(ids=ids_in(engine, 1)),
                                        *engine.batch_args([(i,) for i in uncounted], 1))
            for notification_id, channel, outcome, count in counted:
                counts.setdefault((notification_id, channel), {})[outcome] = count
        found: dict[str, NotificationStatus] = {}
        for (notification_id, user_id, created_at, channel, status, reason, attempts,
             queued_at, finished_at, available_at, *kept) in rows:
            entry = found.get(notification_id)
            if entry is None:
                entry = found[notification_id] = NotificationStatus(
                    notification_id, user_id, created_at, [])
            if channel is None:
                continue
            pending = status == DeliveryStatus.PENDING
            devices = (dict(zip(RECORDED_OUTCOMES, kept)) if kept[0] is not None
                       else counts.get((notification_id, channel), {}))
            entry.channels.append(ChannelStatus(
                notification_id, channel, DeliveryStatus(status), reason, attempts, queued_at,
                finished_at, available_at if pending else None, devices))
        return found

    async def device_statuses(self, ids: list[str], after: tuple[str, str] | None,
                              limit: int, waiting: bool = True) -> list[DeviceStatus]:
        """Up to `limit` devices of the notifications `ids`, in (notification_id, device_id)
        order after the keyset `after`: their final answers, and (`waiting`: some delivery of
        theirs is pending) the devices waiting for another attempt."""
        engine = self.engine
        notification_id, device_id = after or ("", "")
        later = sorted(i for i in ids if i > notification_id)
        parts = WAITING if waiting else ANSWERED
        statement = DEVICE_PAGE.format(parts=parts.format(ids=ids_in(engine, 4)))
        rows = await engine.read(statement, notification_id, device_id, limit,
                                 *engine.batch_args([(i,) for i in later], 1))
        devices = []
        for row in rows:
            removal = DeviceRemoval(*row[12:]) if row[12] is not None else None
            devices.append(DeviceStatus(*row[:12], removal))
        return devices

    async def device_removals(self, since: int, after: str, limit: int) -> list[DeviceRemoval]:
        """Up to `limit` audit rows of removed devices, oldest first, from the keyset
        (`since` ms, `after` device id) on."""
        rows = await self.engine.read(REMOVALS, since, after, limit)
        return [DeviceRemoval(*row) for row in rows]

    async def prune_device_removals(self, before: int, limit: int) -> int:
        """Delete up to `limit` audit rows of devices removed before `before`; how many."""
        rows = await self.engine.write_bulk(PRUNE_REMOVALS + " RETURNING device_id", before, limit)
        return len(rows)
