"""The device registry: its part of the store's interface, its SQL and its rows.

Registrations and device lists are coalesced (`batching`), so a busy server makes one trip to
the database for many requests. A user has at most `max_devices_per_user` devices: a
registration that gives a user a device they did not have (a new token, or one taken over from
another user) evicts their least recently seen ones beyond the cap, in the same statement;
refreshing a device of one's own evicts nothing. SQLite does it with a trigger of the writer
connection's (TEMP: no schema of its own, the cap written in), PostgreSQL in the upsert's own
statement. Mixed into `Store`, which sets `self.engine` before calling `__init__`. Must not
validate what a client sends (the HTTP layer and the channels do).
"""

import contextlib
from collections.abc import Sequence

from owlmetry.store.batching import Batcher
from owlmetry.store.engine import Engine
from owlmetry.store.rows import DeleteResult, Device, DeviceRegistration
from owlmetry.store.users import why_missing

# `Device`'s fields, in order.
DEVICE_COLUMNS = ("id, channel, platform, environment, app_version, device_model, os_version, "
                  "last_seen_at, created_at")

# (device_id, user_id, channel, token, environment, app_version, device_model, os_version,
#  platform, now)
REGISTRATION_TYPES = ("text",) * 9 + ("bigint",)
TOKEN = 3

DEFAULT_MAX_DEVICES_PER_USER = 100

# Batches of registrations at once, at most (`Engine.request_batches`: SQLite takes one while
# no bulk work waits for its writer). At least two under bulk work: with one, those that came
# while it waited for SQLite's one writer waited for all of it, then queued at the writer
# again, behind the bulk work that took it in between; a second waits in the requests' queue
# meanwhile. Few: PostgreSQL took one per connection of the pool (ten), and ten small upserts
# at once on a 2-core host cost it 3x the CPU a registration of three bigger ones (backends
# contending for the cores and the same index pages): a registry at half speed
# (benchmarks/RESULTS.md, session 17). Every batch is one statement on one core of the database's, so three are
# thousands of registrations a second whatever the database's size.
REGISTRATION_BATCHES = 3
# Device lists likewise, where the engine reads on several connections at once (PostgreSQL):
# three at a time read half the database's CPU a list of ten (session 17).
LIST_BATCHES = 3

# The other devices of the trigger's row's user (SQLite, `NEW`), in list order, least recently
# seen last: those past the cap less `NEW` go. `NEW` itself stays: registrations of the same
# millisecond tie on time, and its id may sort after theirs.
DEVICES_PAST_CAP = """SELECT id FROM user_devices WHERE user_id = NEW.user_id AND id <> NEW.id
            ORDER BY last_seen_at DESC, created_at DESC, id LIMIT -1 OFFSET {cap} - 1"""

# The last-come registration of each token, for every row of the batch whose user exists.
# Rows go in token order so that concurrent batches take index locks in one order.
UPSERT_INTO = """
INSERT INTO user_devices (id, user_id, channel, platform, token, environment,
                          app_version, device_model, os_version, last_seen_at, created_at)
SELECT b.id, u.id, b.channel, b.platform, b.token, b.environment,
       b.app_version, b.device_model, b.os_version, b.seen, b.seen
FROM batch AS b JOIN users AS u ON u.id = b.user_id
ORDER BY b.token
ON CONFLICT (token) DO UPDATE SET
    user_id      = excluded.user_id,
    channel      = excluded.channel,
    platform     = excluded.platform,
    environment  = excluded.environment,
    app_version  = excluded.app_version,
    device_model = excluded.device_model,
    os_version   = excluded.os_version,
    last_seen_at = excluded.last_seen_at"""
BATCH = """batch (id, user_id, channel, token, environment, app_version, device_model, os_version,
       platform, seen) AS ({batch})"""

UPSERT_DEVICES = {
    # The cap is the writer connection's trigger's (`SQLITE_CAP`).
    "sqlite": f"""
WITH {BATCH}
{UPSERT_INTO}
RETURNING token, {DEVICE_COLUMNS}
""",
    # $1 is the cap. Every part of one statement sees the table as it was before it: `before`
    # says who owned each token (read once: inlined, it was read again for every row stored,
    # a cost growing with the square of the batch's size), the eviction does not see the rows
    # inserted (so it keeps $1 less the user's rows of this statement), and leaves alone the
    # rows the upsert touched.
    # The rows past the cap are found by a plain read, and only they are locked: FOR UPDATE on
    # the walk itself would lock (write) every row it steps over, the $1 kept ones too, and
    # skip those another statement holds, so counting wrong. A row taken over or seen again
    # since the read (its owner or time changed: PostgreSQL checks the locked row again)
    # stays. It takes only rows no other statement holds (SKIP LOCKED): concurrent batches
    # evicting for the same users would otherwise lock their rows in different orders and
    # deadlock, and a row skipped now goes at that user's next new device.
    "postgresql": f"""
WITH {BATCH},
before AS MATERIALIZED (
    SELECT d.token, d.user_id FROM user_devices AS d JOIN batch AS b ON b.token = d.token),
stored AS ({UPSERT_INTO}
    RETURNING token, user_id, {DEVICE_COLUMNS}),
gained AS (
    SELECT s.user_id, count(*) AS mine
    FROM stored AS s
    WHERE s.user_id IN (
        SELECT s2.user_id FROM stored AS s2 LEFT JOIN before AS b ON b.token = s2.token
        WHERE b.user_id IS DISTINCT FROM s2.user_id)
    GROUP BY s.user_id),
past_cap AS (
    SELECT old.* FROM gained AS g CROSS JOIN LATERAL (
        SELECT d.id, d.user_id, d.last_seen_at FROM user_devices AS d
        WHERE d.user_id = g.user_id AND d.token NOT IN (SELECT token FROM batch)
        ORDER BY d.last_seen_at DESC, d.created_at DESC, d.id
        OFFSET greatest($1 - g.mine, 0)) AS old),
evicted AS (
    DELETE FROM user_devices WHERE id IN (
        SELECT d.id FROM user_devices AS d
        WHERE (d.id, d.user_id, d.last_seen_at) IN (SELECT * FROM past_cap)
        ORDER BY d.id
        FOR UPDATE SKIP LOCKED))
SELECT token, {DEVICE_COLUMNS} FROM stored
""",
}

# SQLite: after a row gives a user a device (inserted, or a token taken over), the user's
# devices past the cap ({cap}, a whole number) go. One indexed read of the user's first
# {cap} + 1 devices per such row; refreshes of one's own devices do not fire it.
SQLITE_CAP_TRIGGERS = ("user_devices_cap_insert", "user_devices_cap_takeover")
SQLITE_CAP = [f"DROP TRIGGER IF EXISTS temp.{name}" for name in SQLITE_CAP_TRIGGERS] + [
    f"""
CREATE TEMP TRIGGER user_devices_cap_insert AFTER INSERT ON main.user_devices
BEGIN
    DELETE FROM user_devices WHERE id IN ({DEVICES_PAST_CAP});
END""",
    f"""
CREATE TEMP TRIGGER user_devices_cap_takeover AFTER UPDATE OF user_id ON main.user_devices
WHEN OLD.user_id IS NOT NEW.user_id
BEGIN
    DELETE FROM user_devices WHERE id IN ({DEVICES_PAST_CAP});
END""",
]

# Rows (user_id, *Device) in list order per user, Device all NULL for a user without devices,
# nothing for a user that does not exist. The batch is one column of user ids.
DEVICES_OF_USERS_COLUMNS = """u.id, d.id, d.channel, d.platform, d.environment, d.app_version,
       d.device_model, d.os_version, d.last_seen_at, d.created_at"""
DEVICES_OF_USERS_ORDER = "ORDER BY u.id, d.last_seen_at DESC, d.created_at DESC, d.id"
DEVICES_OF_USERS = {
    "sqlite": f"""
SELECT {DEVICES_OF_USERS_COLUMNS}
FROM users AS u LEFT JOIN user_devices AS d ON d.user_id = u.id
WHERE u.id IN ({{batch}})
{DEVICES_OF_USERS_ORDER}
""",
    # Each user's devices read through the (user_id, last_seen_at ...) index one user at a
    # time: for a batch of users, the planner otherwise guesses from the table-wide average and
    # scans every device. The inner ORDER BY keeps it from flattening the subquery.
    "postgresql": f"""
SELECT {DEVICES_OF_USERS_COLUMNS}
FROM users AS u
LEFT JOIN LATERAL (
    SELECT * FROM user_devices
    WHERE user_devices.user_id = u.id
    ORDER BY last_seen_at DESC, created_at DESC, id
) AS d ON true
WHERE u.id = ANY($1::text[])
{DEVICES_OF_USERS_ORDER}
""",
}

DELETE_DEVICE = "DELETE FROM user_devices WHERE id = $1 AND user_id = $2 RETURNING id"


class Devices:
    engine: Engine

    def __init__(self):
        super().__init__()
        self.max_devices_per_user = DEFAULT_MAX_DEVICES_PER_USER
        self._cap_in_force: int | None = None  # the cap SQLite's triggers hold
        self._registrations = Batcher(
            self._register_batch,
            concurrency=lambda: self.engine.request_batches(REGISTRATION_BATCHES))
        self._device_lists = Batcher(self._list_batch,
                                     concurrency=min(self.engine.concurrency, LIST_BATCHES))

    async def _finish_device_batches(self) -> None:
        await self._registrations.wait_idle()
        await self._device_lists.wait_idle()

    def limit_devices(self, cap: int) -> None:
        """At most `cap` (>= 1) devices per user from the next registration on."""
        if cap < 1:
            raise ValueError("a user may have at least one device")
        self.max_devices_per_user = cap

    @contextlib.asynccontextmanager
    async def _upsert_way(self):
        """`(run, params)` for the batch's upsert, with the cap in force. On SQLite the triggers
        that hold it are made again, after a change, in the same turn of the writer as that
        upsert, so a registration never waits for the writer twice."""
        cap = self.max_devices_per_user
        if self.engine.name == "postgresql":
            yield self.engine.write, (cap,)
        elif self._cap_in_force == cap:
            yield self.engine.write, ()
        else:
            async with self.engine.transaction() as run:
                for statement in SQLITE_CAP:
                    await run(statement.format(cap=int(cap)))
                yield run, ()
            self._cap_in_force = cap

    async def register_device(
        self, device_id: str, user_id: str, reg: DeviceRegistration, now: int
    ) -> Device | None:
        """Insert, or take over and refresh the row with that token, in one statement, which
        also evicts the user's least recently seen devices past the cap when the user gained one.

        `device_id` is used only if the token is new. None when the user does not exist.
        """
        return await self._registrations.submit((
            device_id, user_id, reg.channel, reg.token, reg.environment,
            reg.app_version, reg.device_model, reg.os_version, reg.platform, now,
        ))

    async def _register_batch(self, rows: Sequence[tuple]) -> list[Device | None]:
        # One statement may not touch a token twice, so the last request for a token goes in
        # and the others with that token get its row, as if they had come just before it. If
        # that last request's user is gone, the others go again in a next round.
        results: list[Device | None] = [None] * len(rows)
        waiting = range(len(rows))
        while waiting:
            last = {rows[i][TOKEN]: i for i in waiting}
            # Rows of users that do not exist are skipped and come back as nothing.
            async with self._upsert_way() as (run, params):
                stored = await self.engine.run_batched(
                    run, UPSERT_DEVICES[self.engine.name], REGISTRATION_TYPES,
                    [rows[i] for i in last.values()], *params)
            devices = {row[0]: Device(*row[1:]) for row in stored}
            again = []
            for i in waiting:
                token = rows[i][TOKEN]
                if token in devices:
                    results[i] = devices[token]
                elif last[token] != i:
                    again.append(i)
            waiting = again
        return results

    async def list_devices(self, user_id: str) -> list[Device] | None:
        """The user's devices, newest `last_seen_at` first; None when the user does not exist."""
        return await self._device_lists.submit(user_id)

    async def _list_batch(self, user_ids: Sequence[str]) -> list[list[Device] | None]:
        devices: dict[str, list[Device]] = {}
        rows = await self.engine.run_batched(
            self.engine.read, DEVICES_OF_USERS[self.engine.name], ("text",),
            [(user_id,) for user_id in set(user_ids)])
        for user_id, *device in rows:
            found = devices.setdefault(user_id, [])
            if device[0] is not None:
                found.append(Device(*device))
        return [devices.get(user_id) for user_id in user_ids]

    async def delete_device(self, user_id: str, device_id: str) -> DeleteResult:
        if await self.engine.write(DELETE_DEVICE, device_id, user_id):
            return DeleteResult.DELETED
        return DeleteResult(await why_missing(self.engine, user_id))
