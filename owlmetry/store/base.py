"""The store interface: every question the service asks its database, and the rows it gets back.

Both backends (`sqlite.py`, `postgres.py`) implement `Store` with the same behaviour; the HTTP
layer and the CLI see only this module. Nothing here knows SQL, HTTP or JSON.
"""

import abc
import enum
from dataclasses import dataclass


class StoreError(Exception):
    """A failure the caller can explain to a person (bad URL, unreachable database, ...)."""


class EmailTaken(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    kind: str  # "agent" | "server"
    name: str | None
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """What a client sends to register or refresh a device, already validated."""

    channel: str
    token: str
    environment: str
    app_version: str | None
    device_model: str | None
    os_version: str | None


@dataclass(frozen=True, slots=True)
class Device:
    """A registry row as the API shows it: everything but the token."""

    id: str
    channel: str
    environment: str
    app_version: str | None
    device_model: str | None
    os_version: str | None
    last_seen_at: int
    created_at: int


@dataclass(frozen=True, slots=True)
class NotificationContent:
    """What a producer says, the same for every recipient; `data` is a JSON object or None."""

    type: str
    title: str
    body: str | None = None
    link: str | None = None
    data: dict | None = None
    team_id: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """An inbox row as the API shows it (`data` is never listed)."""

    id: str
    type: str
    title: str
    body: str | None
    link: str | None
    team_id: str | None
    read_at: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A device a delivery must still reach."""

    device_id: str
    token: str
    environment: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A pending delivery this process now holds the lease of, with everything needed to do it.

    `targets` are the recipient's devices of the channel that have no final answer yet;
    `earlier` counts the outcomes recorded by earlier attempts (a crash, a retry).
    """

    notification_id: str
    channel: str
    attempts: int
    user_id: str
    content: NotificationContent
    unread: int
    targets: list[PushTarget]
    earlier: dict[str, int]


@dataclass(frozen=True, slots=True)
class PushRecord:
    """A device's final answer for a delivery. `invalid_since` (ms) marks a dead token: its
    device row is deleted unless it was registered again after that moment."""

    notification_id: str
    device_id: str
    channel: str
    outcome: str  # "delivered" | "removed" | "failed" | "skipped"
    status: int | None
    reason: str | None
    invalid_since: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryEnd:
    """A claimed delivery's next state: finished (`status`), or back in the queue at `retry_at`."""

    notification_id: str
    channel: str
    status: str  # "sent" | "failed" | "skipped" | "pending"
    reason: str | None
    retry_at: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a set of notifications stands: deliveries by status, device answers by outcome."""

    deliveries: dict[str, int]
    pushes: dict[str, int]

    @property
    def done(self) -> bool:
        return not self.deliveries.get("pending")


class DeleteOutcome(enum.Enum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"  # no such device, or another user's
    NO_USER = "no_user"  # the caller's user no longer exists


class Store(abc.ABC):
    """One database. Open it with `owlmetry.store.open_store(url)`; close it when done."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema (schema.sql); safe to run any number of times."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the database does not answer."""

    async def backup(self, path: str) -> None:
        """Write a consistent copy of the whole database to the new file `path`, while the
        database is in use. StoreError where the engine has its own tools for this."""
        raise StoreError("this database is backed up with its own tools")

    @abc.abstractmethod
    async def setting(self, key: str, default: str) -> str:
        """The stored value of `key`; stores `default` first if there is none (first writer wins)."""

    @abc.abstractmethod
    async def create_user(self, user_id: str, email: str, now: int) -> User:
        """Raise EmailTaken when the email (compared lower-case) exists."""

    @abc.abstractmethod
    async def user_by_email(self, email: str) -> User | None: ...

    @abc.abstractmethod
    async def user_exists(self, user_id: str) -> bool: ...

    @abc.abstractmethod
    async def user_by_id(self, user_id: str) -> User | None: ...

    # Email login. Emails are compared lower-case; times are milliseconds like every `now`.

    @abc.abstractmethod
    async def login_user(
        self, user_id: str, email: str, now: int, create: bool
    ) -> tuple[User, bool] | None:
        """The user with this email and whether it was made now: when there is none and
        `create` (sign-up is open), one is made with `user_id`; otherwise None."""

    @abc.abstractmethod
    async def add_login_code(
        self, code_id: str, email: str, code_hash: str, now: int, expires_at: int,
        window_start: int, limit: int,
    ) -> int | None:
        """Keep a new code unless `limit` codes of the email were made after `window_start`.

        None when kept; otherwise the creation time of the oldest code counted (a slot frees
        when it leaves the window). Count and insert are one step: concurrent calls for an email
        never keep more than `limit`. Codes of every email made at or before `window_start` are
        deleted (they are expired, and the limit no longer counts them)."""

    @abc.abstractmethod
    async def discard_login_code(self, code_id: str) -> None:
        """Forget a code as if it had never been made (its mail could not be sent)."""

    @abc.abstractmethod
    async def use_login_code(
        self, email: str, code_hash: str, now: int, max_attempts: int
    ) -> bool:
        """One login attempt: True, and the code is used up, when an unused code of the email
        with that hash has not expired (`expires_at > now`) and has counted fewer than
        `max_attempts` attempts. Every attempt, right or wrong, counts against each of the
        email's outstanding codes, so a code is void after `max_attempts` wrong ones. Atomic:
        a code is used once however many attempts race."""

    @abc.abstractmethod
    async def create_api_key(
        self, key_id: str, kind: str, name: str | None, key_hash: str, now: int
    ) -> ApiKey: ...

    @abc.abstractmethod
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Revoked keys are returned too; the caller decides."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        """False when no unrevoked key has that id."""

    @abc.abstractmethod
    async def register_device(
        self, device_id: str, user_id: str, reg: DeviceRegistration, now: int
    ) -> Device | None:
        """Insert, or take over and refresh the row with that token, in one statement.

        `device_id` is used only if the token is new. None when the user does not exist.
        """

    @abc.abstractmethod
    async def list_devices(self, user_id: str) -> list[Device] | None:
        """The user's devices, newest `last_seen_at` first; None when the user does not exist."""

    @abc.abstractmethod
    async def delete_device(self, user_id: str, device_id: str) -> DeleteOutcome: ...

    # The inbox. Each returns None when the user no longer exists.

    @abc.abstractmethod
    async def list_notifications(
        self, user_id: str, read_state: str, type: str | None,
        before: tuple[int, str] | None, limit: int,
    ) -> list[Notification] | None:
        """Newest first by (created_at, id); `before` is the keyset of the previous page's last."""

    @abc.abstractmethod
    async def unread_count(self, user_id: str) -> int | None: ...

    @abc.abstractmethod
    async def mark_all_read(self, user_id: str, type: str | None, now: int) -> int | None: ...

    @abc.abstractmethod
    async def set_read(
        self, user_id: str, notification_id: str, read: bool, now: int
    ) -> Notification | DeleteOutcome:
        """The updated row, or NOT_FOUND (missing, deleted, another user's) or NO_USER."""

    @abc.abstractmethod
    async def delete_notification(
        self, user_id: str, notification_id: str, now: int
    ) -> DeleteOutcome:
        """Soft delete: the row stays, hidden from every inbox query."""

    # The dispatcher's work queue.

    @abc.abstractmethod
    async def enqueue_notifications(
        self, recipients: list[tuple[str, str]], content: NotificationContent,
        channels: list[str], now: int,
    ) -> list[str]:
        """Write inbox rows (notification_id, user_id) and a pending delivery per channel, in one
        transaction. Returns the ids written, in order; users that do not exist are skipped."""

    @abc.abstractmethod
    async def claim_deliveries(
        self, owner: str, now: int, lease_ms: int, limit: int,
        only: list[str] | None = None,
    ) -> list[Claim]:
        """Take up to `limit` pending deliveries whose time has come (of the notifications in
        `only`, if given) under a lease held by `owner`. No two owners hold one at a time."""

    @abc.abstractmethod
    async def renew_leases(self, owner: str, keys: list[tuple[str, str]], until: int) -> None:
        """Extend the leases `owner` still holds on these (notification_id, channel)."""

    @abc.abstractmethod
    async def save_outcomes(
        self, owner: str, pushes: list[PushRecord], ends: list[DeliveryEnd], now: int
    ) -> list[PushRecord]:
        """In one transaction: delete the dead tokens' devices, record the pushes, and end or
        re-queue the deliveries `owner` holds. Returns the records as stored: a dead token whose
        device was registered again after `invalid_since` is kept, and its record says so."""

    @abc.abstractmethod
    async def progress(self, notification_ids: list[str]) -> Progress: ...

    # What /metrics reads at every scrape: cheap, read-only.

    @abc.abstractmethod
    async def device_counts(self, channels: list[str]) -> dict[tuple[str, str], int]:
        """Registered devices of these channels by (channel, environment), zeros included."""

    @abc.abstractmethod
    async def pending_deliveries(self, now: int) -> dict[str, int]:
        """Pending deliveries by state: "due" (claimable at `now`) and "later" (leased by a
        dispatcher or waiting out a retry backoff: the store cannot tell these apart)."""
