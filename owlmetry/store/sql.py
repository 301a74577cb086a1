"""What both SQL backends do the same way: the `Store` methods, in terms of a few primitives.

A backend supplies `_write`, `_read` and `_transaction` (run statements from `queries`, return
their rows), `_batch` and `_batch_args` (its way of passing a whole batch of rows as one
parameter: SQLite's json_each, PostgreSQL's unnest), `_is_unique_violation`, and
`_devices_of_users`, the one statement each engine writes its own way. Registrations and device
lists are coalesced (`batching`), so a busy server makes one trip to the database for many
requests. This class turns rows into the interface's dataclasses; it must not hold connection
logic or dialect-specific SQL.
"""

import abc
import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import orjson

from owlmetry.store import queries
from owlmetry.store.base import (
    ApiKey,
    Claim,
    DeleteOutcome,
    Device,
    DeviceRegistration,
    EmailTaken,
    Notification,
    NotificationContent,
    Progress,
    PushRecord,
    PushTarget,
    Store,
    User,
)
from owlmetry.store.batching import Batcher

# (device_id, user_id, channel, token, environment, app_version, device_model, os_version, now)
RegistrationRow = tuple
REGISTRATION_TYPES = ("text",) * 8 + ("bigint",)
TOKEN = 3


class SQLStore(Store):
    def __init__(self, *, concurrency: int):
        self._registrations = Batcher(self._register_batch, concurrency=concurrency)
        self._device_lists = Batcher(self._list_batch, concurrency=concurrency)
        self._statements: dict[tuple, str] = {}
        self._claim = queries.CLAIM_DELIVERIES.format(only="", lock=self._skip_locked)

    @abc.abstractmethod
    async def _write(self, sql: str, *params) -> list:
        """Run a statement that may change data; return its rows."""

    @abc.abstractmethod
    async def _read(self, sql: str, *params) -> list:
        """Run a read-only statement; return its rows."""

    async def _write_lease(self, sql: str, *params) -> list:
        """A claim or lease renewal: a write whose loss in a database crash only makes work
        claimable again, so the backend may skip waiting for the disk."""
        return await self._write(sql, *params)

    @abc.abstractmethod
    def _is_unique_violation(self, exc: Exception) -> bool: ...

    @abc.abstractmethod
    async def _devices_of_users(self, user_ids: Sequence[str]) -> list:
        """Rows (user_id, *Device) in list order per user, Device all NULL for a user without
        devices, nothing for a user that does not exist."""

    @abc.abstractmethod
    def _batch(self, types: tuple[str, ...], first: int = 1) -> str:
        """SQL yielding one row per item of a batch passed as parameter(s) from `$first` on;
        `types` are the columns' PostgreSQL types."""

    @abc.abstractmethod
    def _batch_args(self, rows: Sequence[tuple], width: int) -> tuple:
        """The parameter(s) that carry `rows` to `_batch`."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager:
        """`async with self._transaction() as run:` -- `await run(sql, *params)` -> rows, all in
        one transaction that commits at the end of the block (or rolls back on an error)."""

    # Rows that wait for a row lock: PostgreSQL skips them, SQLite (one writer) has none.
    _skip_locked = ""
    # A statement run first in a login-code send's transaction, taking a lock on the email ($1)
    # until it ends. SQLite needs none: its transactions run one at a time.
    _login_code_lock: str | None = None
    # The reads of a claim; a backend may have its own, for its planner.
    _claimed_notifications = queries.CLAIMED_NOTIFICATIONS
    _claimed_targets = queries.CLAIMED_TARGETS
    _unanswered_targets = queries.UNANSWERED_TARGETS

    def _batched(self, template: str, types: tuple[str, ...], first: int) -> str:
        statement = self._statements.get((template, types))
        if statement is None:
            statement = template.format(batch=self._batch(types, first))
            self._statements[(template, types)] = statement
        return statement

    async def _run_batched(self, run, template: str, types: tuple[str, ...], rows,
                           *params) -> list:
        """Run `template` on `rows` (no-op when empty); `params` are its $1.., the batch's after."""
        if not rows:
            return []
        return await run(self._batched(template, types, len(params) + 1), *params,
                         *self._batch_args(rows, len(types)))

    async def _finish_batches(self) -> None:
        await self._registrations.wait_idle()
        await self._device_lists.wait_idle()

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def setting(self, key: str, default: str) -> str:
        (row,) = await self._write(queries.SETTING, key, default)
        return row[0]

    async def create_user(self, user_id: str, email: str, now: int) -> User:
        try:
            (row,) = await self._write(queries.CREATE_USER, user_id, email.lower(), now)
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise EmailTaken(f"a user with email {email!r} already exists") from None
            raise
        return User(*row)

    async def user_by_email(self, email: str) -> User | None:
        rows = await self._read(queries.USER_BY_EMAIL, email.lower())
        return User(*rows[0]) if rows else None

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self._read(queries.USER_EXISTS, user_id))

    async def user_by_id(self, user_id: str) -> User | None:
        rows = await self._read(queries.USER_BY_ID, user_id)
        return User(*rows[0]) if rows else None

    async def login_user(self, user_id, email, now, create):
        user = await self.user_by_email(email)
        if user is not None:
            return user, False
        if not create:
            return None
        rows = await self._write(queries.CREATE_USER_IF_NEW, user_id, email.lower(), now)
        if rows:
            return User(*rows[0]), True
        # A concurrent first login of the same email made the user between the read and here.
        user = await self.user_by_email(email)
        return (user, False) if user is not None else None

    async def add_login_code(self, code_id, email, code_hash, now, expires_at, window_start,
                             limit):
        email = email.lower()
        async with self._transaction() as run:
            if self._login_code_lock:
                await run(self._login_code_lock, email)
            ((count, oldest),) = await run(queries.RECENT_LOGIN_CODES, email, window_start)
            if count >= limit:
                return oldest
            await run(queries.ADD_LOGIN_CODE, code_id, email, code_hash, now, expires_at)
        await self._write(queries.FORGET_LOGIN_CODES, window_start)
        return None

    async def discard_login_code(self, code_id):
        await self._write(queries.DISCARD_LOGIN_CODE, code_id)

    async def use_login_code(self, email, code_hash, now, max_attempts):
        rows = await self._write(queries.USE_LOGIN_CODE, email.lower(), code_hash, now,
                                 max_attempts)
        return any(used_at is not None for (used_at,) in rows)

    async def create_api_key(
        self, key_id: str, kind: str, name: str | None, key_hash: str, now: int
    ) -> ApiKey:
        (row,) = await self._write(queries.CREATE_API_KEY, key_id, kind, name, key_hash, now)
        return ApiKey(*row)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._read(queries.API_KEY_BY_HASH, key_hash)
        return ApiKey(*rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in await self._read(queries.LIST_API_KEYS)]

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        return bool(await self._write(queries.REVOKE_API_KEY, key_id, now))

    async def register_device(
        self, device_id: str, user_id: str, reg: DeviceRegistration, now: int
    ) -> Device | None:
        return await self._registrations.submit((
            device_id, user_id, reg.channel, reg.token, reg.environment,
            reg.app_version, reg.device_model, reg.os_version, now,
        ))

    async def _register_batch(self, rows: Sequence[RegistrationRow]) -> list[Device | None]:
        # One statement may not touch a token twice, so the last request for a token goes in
        # and the others with that token get its row, as if they had come just before it. If
        # that last request's user is gone, the others go again in a next round.
        results: list[Device | None] = [None] * len(rows)
        waiting = range(len(rows))
        while waiting:
            last = {rows[i][TOKEN]: i for i in waiting}
            # Rows of users that do not exist are skipped and come back as nothing.
            stored = await self._run_batched(self._write, queries.UPSERT_DEVICES,
                                             REGISTRATION_TYPES, [rows[i] for i in last.values()])
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
        return await self._device_lists.submit(user_id)

    async def _list_batch(self, user_ids: Sequence[str]) -> list[list[Device] | None]:
        devices: dict[str, list[Device]] = {}
        for user_id, *device in await self._devices_of_users(list(set(user_ids))):
            found = devices.setdefault(user_id, [])
            if device[0] is not None:
                found.append(Device(*device))
        return [devices.get(user_id) for user_id in user_ids]

    async def delete_device(self, user_id: str, device_id: str) -> DeleteOutcome:
        if await self._write(queries.DELETE_DEVICE, device_id, user_id):
            return DeleteOutcome.DELETED
        return await self._missing(user_id)

    async def _missing(self, user_id: str) -> DeleteOutcome:
        """Why a row of the user's was not found: NOT_FOUND, or NO_USER (a 401, not a 404)."""
        return DeleteOutcome.NOT_FOUND if await self.user_exists(user_id) else DeleteOutcome.NO_USER

    # ---- The inbox --------------------------------------------------------------------------

    async def _user_check(self, user_id: str, found):
        """`found` when it says something, else None if the user is gone (a 401, not a 404)."""
        if found or await self.user_exists(user_id):
            return found
        return None

    async def list_notifications(self, user_id, read_state, type, before, limit):
        created_at, notification_id = before or (None, None)
        rows = await self._read(queries.LIST_NOTIFICATIONS, user_id, read_state, type,
                                created_at, notification_id, limit)
        return await self._user_check(user_id, [Notification(*row) for row in rows])

    async def unread_count(self, user_id):
        (row,) = await self._read(queries.UNREAD_COUNT, user_id)
        return await self._user_check(user_id, row[0])

    async def mark_all_read(self, user_id, type, now):
        rows = await self._write(queries.MARK_ALL_READ, user_id, type, now)
        return await self._user_check(user_id, len(rows))

    async def set_read(self, user_id, notification_id, read, now):
        rows = await self._write(queries.SET_READ, user_id, notification_id, now if read else None)
        if rows:
            return Notification(*rows[0])
        return await self._missing(user_id)

    async def delete_notification(self, user_id, notification_id, now):
        if await self._write(queries.DELETE_NOTIFICATION, user_id, notification_id, now):
            return DeleteOutcome.DELETED
        return await self._missing(user_id)

    # ---- The dispatcher's queue -------------------------------------------------------------

    @staticmethod
    def _shared_content(content, now) -> tuple:
        data = orjson.dumps(content.data).decode() if content.data is not None else None
        return (content.type, content.title, content.body, content.link, data,
                content.team_id, now)

    async def enqueue_notifications(self, recipients, content, channels, now):
        async with self._transaction() as run:
            written = {row[0] for row in await self._run_batched(
                run, queries.ENQUEUE_NOTIFICATIONS, ("text", "text"), recipients,
                *self._shared_content(content, now))}
            ids = [notification_id for notification_id, _ in recipients
                   if notification_id in written]
            for channel in channels:
                await self._run_batched(run, queries.ENQUEUE_DELIVERIES, ("text",),
                                        [(notification_id,) for notification_id in ids],
                                        channel, now)
        return ids

    async def claim_deliveries(self, owner, now, lease_ms, limit, only=None):
        if only is None:
            claimed = await self._write_lease(self._claim, owner, now, now + lease_ms, limit)
        else:
            narrow = f"AND notification_id IN ({self._batch(('text',), first=5)})"
            claim = queries.CLAIM_DELIVERIES.format(only=narrow, lock=self._skip_locked)
            claimed = await self._write_lease(claim, owner, now, now + lease_ms, limit,
                                              *self._batch_args([(i,) for i in only], 1))
        if not claimed:
            return []
        return await self._claims(claimed)

    async def _claims(self, claimed: list) -> list[Claim]:
        # Only a delivery claimed before can have answers on record.
        again = [(n, c) for n, c, attempts in claimed if attempts > 1]
        targets_by_kind: dict[tuple[str, bool], list[tuple[str]]] = {}
        for notification_id, channel, attempts in claimed:
            targets_by_kind.setdefault((channel, attempts > 1), []).append((notification_id,))
        notification_rows, earlier_rows, *target_rows = await asyncio.gather(
            self._run_batched(self._read, self._claimed_notifications, ("text",),
                              list({(notification_id,) for notification_id, _, _ in claimed})),
            self._run_batched(self._read, queries.EARLIER_OUTCOMES, ("text", "text"), again),
            *(self._run_batched(self._read,
                                self._unanswered_targets if resumed else self._claimed_targets,
                                ("text",), ids, channel)
              for (channel, resumed), ids in targets_by_kind.items()))
        notifications = {row[0]: row[1:] for row in notification_rows}
        targets: dict[tuple[str, str], list[PushTarget]] = {}
        for (channel, _), rows in zip(targets_by_kind, target_rows):
            for notification_id, device_id, token, environment in rows:
                targets.setdefault((notification_id, channel), []).append(
                    PushTarget(device_id, token, environment))
        earlier: dict[tuple, dict[str, int]] = {}
        for notification_id, channel, outcome, count in earlier_rows:
            earlier.setdefault((notification_id, channel), {})[outcome] = count
        claims = []
        # The recipients of one notification share one content object (a channel may build
        # its message once for all of them).
        contents: dict[tuple, NotificationContent] = {}
        for notification_id, channel, attempts in claimed:
            row = notifications.get(notification_id)
            if row is None:  # the recipient was deleted since
                continue
            user_id, unread, shared = row[0], row[-1], row[1:-1]
            content = contents.get(shared)
            if content is None:
                type_, title, body, link, data, team_id = shared
                content = contents[shared] = NotificationContent(
                    type_, title, body, link, orjson.loads(data) if data else None, team_id)
            claims.append(Claim(notification_id, channel, attempts, user_id, content, unread,
                                targets.get((notification_id, channel), []),
                                earlier.get((notification_id, channel), {})))
        return claims

    async def renew_leases(self, owner, keys, until):
        rows = [(notification_id, channel, owner, until) for notification_id, channel in keys]
        await self._run_batched(self._write_lease, queries.RENEW_LEASES,
                                ("text", "text", "text", "bigint"), rows)

    async def save_outcomes(self, owner, pushes, ends, now):
        dead = [p for p in pushes if p.outcome == "removed"]
        async with self._transaction() as run:
            if dead:
                await self._run_batched(run, queries.DELETE_DEAD_DEVICES, ("text", "bigint"),
                                        [(p.device_id, p.invalid_since) for p in dead])
                kept = {row[0] for row in await self._run_batched(
                    run, queries.EXISTING_DEVICES, ("text",), [(p.device_id,) for p in dead])}
                if kept:
                    pushes = [kept_record(p) if p.device_id in kept and p.outcome == "removed"
                              else p for p in pushes]
            await self._run_batched(
                run, queries.RECORD_PUSHES,
                ("text", "text", "text", "text", "integer", "text", "bigint"),
                self._push_rows(pushes, now))
            await self._run_batched(
                run, queries.END_DELIVERIES,
                ("text", "text", "text", "text", "bigint", "text", "bigint"),
                self._end_rows(ends, owner, now))
        return pushes

    @staticmethod
    def _push_rows(pushes, now) -> list[tuple]:
        return [(p.notification_id, p.device_id, p.channel, p.outcome, p.status, p.reason, now)
                for p in pushes]

    @staticmethod
    def _end_rows(ends, owner, now) -> list[tuple]:
        return [(e.notification_id, e.channel, e.status, e.reason,
                 e.retry_at if e.status == "pending" else now, owner,
                 None if e.status == "pending" else now) for e in ends]

    async def progress(self, notification_ids):
        rows = [(notification_id,) for notification_id in notification_ids]
        deliveries = await self._run_batched(self._read, queries.DELIVERY_PROGRESS, ("text",), rows)
        pushes = await self._run_batched(self._read, queries.PUSH_PROGRESS, ("text",), rows)
        return Progress(dict(deliveries), dict(pushes))


    # ---- Metrics ----------------------------------------------------------------------------

    async def device_counts(self, channels):
        counts = {}
        for channel in channels:
            ((production, sandbox),) = await self._read(queries.DEVICE_COUNTS, channel)
            counts[channel, "production"], counts[channel, "sandbox"] = production, sandbox
        return counts

    async def pending_deliveries(self, now):
        ((due, pending),) = await self._read(queries.PENDING_DELIVERIES, now)
        return {"due": due, "later": pending - due}

def kept_record(record: PushRecord) -> PushRecord:
    """A dead token's record whose device was registered again after APNs gave up on it."""
    return PushRecord(record.notification_id, record.device_id, record.channel, "failed",
                      record.status, f"{record.reason} (registered again since; kept)")
