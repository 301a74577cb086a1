"""The store's vocabulary: the rows it hands out and takes in, its enums and its errors.

Every module of the store and every caller shares these. The enums are `StrEnum`s, so a member
is the very string the database stores and the API shows. Nothing here knows SQL, HTTP or JSON.
"""

import enum
from dataclasses import dataclass

from owlmetry.frozen import quick_init
from owlmetry.push_options import DEFAULT as DEFAULT_PUSH_OPTIONS
from owlmetry.push_options import PushOptions


class StoreError(Exception):
    """A failure the caller can explain to a person (bad URL, unreachable database, ...)."""


class EmailTaken(StoreError):
    pass


class DatabaseUnavailable(StoreError):
    """The database cannot take work now: unreachable, shutting down, its disk full, I/O
    errors, read-only, or (SQLite) its file deleted or replaced. Both engines raise it, and
    have logged it (once per kind) by then: callers answer 503 or back off, without a
    traceback. `kind` names the failure in a few words, `detail` is the driver's message."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"database unavailable ({kind}): {detail}")
        self.kind = kind
        self.detail = detail


class DeliveryStatus(enum.StrEnum):
    """Where a delivery (a notification on one channel) stands."""

    PENDING = "pending"  # queued: due, leased by a dispatcher, or waiting out a backoff
    SENT = "sent"  # at least one device took it
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to send to, or the channel cannot send


class PushOutcome(enum.StrEnum):
    """What one device's send came to."""

    DELIVERED = "delivered"
    REMOVED = "removed"  # the token is dead: its device row is deleted
    FAILED = "failed"  # permanent; the reason says why
    SKIPPED = "skipped"  # the channel cannot send (say, no credentials)
    RETRY = "retry"  # transient: the dispatcher sends again later; never stored


# The outcomes a device's answer is stored with, in the order reports list them.
RECORDED_OUTCOMES = (PushOutcome.DELIVERED, PushOutcome.REMOVED, PushOutcome.FAILED,
                     PushOutcome.SKIPPED)


class Missing(enum.StrEnum):
    """Why a row of a user's was not found."""

    NOT_FOUND = "not_found"  # no such row, or another user's
    NO_USER = "no_user"  # the caller's user no longer exists


class DeleteResult(enum.StrEnum):
    """What a delete came to."""

    DELETED = "deleted"
    NOT_FOUND = Missing.NOT_FOUND.value
    NO_USER = Missing.NO_USER.value


class ReadState(enum.StrEnum):
    """Which of a user's notifications an inbox list shows."""

    ALL = "all"
    UNREAD = "unread"
    READ = "read"


class Platform(enum.StrEnum):
    """What a push device is, and so which push service reaches it."""

    IOS = "ios"  # APNs
    ANDROID = "android"  # FCM


class DeviceChannel(enum.StrEnum):
    """How a device was registered (`user_devices.channel`, kept as the client sent it)."""

    IOS_PUSH = "ios_push"  # the seed's form: always an iOS device
    MOBILE_PUSH = "mobile_push"  # today's Owlmetry form, with a `platform`


class TargetKind(enum.StrEnum):
    """Where a claim reads a delivery channel's targets from (see `Targets`)."""

    DEVICES = "devices"
    RECIPIENT = "recipient"


class PendingState(enum.StrEnum):
    """Pending deliveries as /metrics counts them."""

    DUE = "due"  # claimable now
    LATER = "later"  # leased by a dispatcher, or waiting out a retry backoff


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    created_at: int
    # The stored preferences object (owlmetry/preferences.py's shape); None: none set.
    preferences: dict | None = None


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
    platform: Platform = Platform.IOS  # the seed's ios_push devices are all iOS


@dataclass(frozen=True, slots=True)
class Device:
    """A registry row as the API shows it: everything but the token."""

    id: str
    channel: str
    platform: str
    environment: str
    app_version: str | None
    device_model: str | None
    os_version: str | None
    last_seen_at: int
    created_at: int


@dataclass(frozen=True, slots=True)
class NotificationContent:
    """What a producer says, the same for every recipient; `data` is a JSON object or None;
    `options` how its pushes go out (`owlmetry.push_options`)."""

    type: str
    title: str
    body: str | None = None
    link: str | None = None
    data: dict | None = None
    team_id: str | None = None
    options: PushOptions = DEFAULT_PUSH_OPTIONS


@dataclass(frozen=True, slots=True)
class RecipientGroup:
    """Recipients of one notification that get the same deliveries: a pending delivery on each
    of `channels`, and an inbox row that is listed, or born deleted (`listed` False: the user
    turned the inbox off for the type; the row still holds what the channels send)."""

    channels: tuple[str, ...]
    listed: bool
    recipients: list[tuple[str, str]]  # (notification_id, user_id)


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
class Targets:
    """What a delivery channel sends to: how a claim finds the `PushTarget`s of its deliveries.

    A channel says it once, as its `targets` (`owlmetry.notify.channels.base.Channel`), and the
    dispatcher hands every channel's to the claim, so the store needs no list of channels.

    - `Targets(TargetKind.DEVICES, ("ios_push", "mobile_push"))`: the recipient's devices
      registered with one of these device channels (`user_devices.channel`), one target each.
    - `Targets(TargetKind.RECIPIENT)`: the recipient user, once: the target's `device_id` is the
      user's id and its `token` the user's email address (`environment`, `platform`: None). The
      channel's push records then hold the user id in `device_id`; a user id is never a device
      id, so the deletion of dead tokens' devices can never reach anything of such a channel.
    """

    kind: TargetKind
    device_channels: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.kind is TargetKind.DEVICES) != bool(self.device_channels):
            raise ValueError("device channels are what DEVICES targets, and only they")


@quick_init
@dataclass(frozen=True, slots=True)
class PushTarget:
    """A device a delivery must still reach (or, for a RECIPIENT channel, the user; `Targets`)."""

    device_id: str
    token: str
    environment: str | None
    platform: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Claim:
    """A pending delivery this process now holds the lease of, with everything needed to do it.

    `targets` are the channel's targets (its `Targets`: the recipient's devices of the device
    channels it serves, or the recipient) that have no final answer yet;
    `earlier` counts the outcomes recorded by earlier attempts (a crash, a retry).
    """

    notification_id: str
    channel: str
    attempts: int
    user_id: str
    content: NotificationContent
    unread: int
    targets: list[PushTarget]
    earlier: dict[PushOutcome, int]


@quick_init
@dataclass(frozen=True, slots=True)
class PushRecord:
    """A device's final answer for a delivery (never RETRY). `invalid_since` (ms) marks a dead
    token: its device row is deleted unless it was registered again after that moment."""

    notification_id: str
    device_id: str
    channel: str
    outcome: PushOutcome
    status: int | None
    reason: str | None
    invalid_since: int | None = None
    # For the producer's status (owlmetry/store/delivery_status.py): the device as sent to
    # (kept for a device waiting for another attempt), the provider's message id (APNs'
    # apns-id, FCM's message name), the provider's own timestamp of a dead token (APNs' 410),
    # and when the attempt that got the answer began.
    platform: str | None = None
    environment: str | None = None
    apns_id: str | None = None
    provider_at: int | None = None
    attempted_at: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class DeliveryEnd:
    """A claimed delivery's next state: finished (`status`), or back in the queue at `retry_at`
    (status PENDING)."""

    notification_id: str
    channel: str
    status: DeliveryStatus
    reason: str | None
    retry_at: int | None = None
    # A finished delivery's devices by outcome (delivered, removed, failed, skipped), kept with
    # it for the producer's status.
    outcomes: tuple[int, int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a set of notifications stands: deliveries by status, device answers by outcome."""

    deliveries: dict[DeliveryStatus, int]
    pushes: dict[PushOutcome, int]

    @property
    def done(self) -> bool:
        return not self.deliveries.get(DeliveryStatus.PENDING)


@dataclass(frozen=True, slots=True)
class DeviceRemoval:
    """Why a device is gone: the audit row a provider's answer left when it removed it (the
    token only as a hint, its first characters)."""

    device_id: str
    user_id: str
    channel: str
    platform: str
    environment: str
    token_hint: str
    notification_id: str
    status: int | None
    reason: str | None
    provider_at: int | None  # the provider's own timestamp (APNs' 410), where it gives one
    removed_at: int


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """One notification's delivery on one channel, with its devices' outcomes counted
    (`RECORDED_OUTCOMES`, and "retrying" for devices waiting for another attempt)."""

    notification_id: str
    channel: str
    status: DeliveryStatus
    reason: str | None
    attempts: int
    created_at: int
    finished_at: int | None
    next_attempt_at: int | None  # a pending delivery's next claim (or its lease's end)
    devices: dict[str, int]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device's part in a notification's delivery: its final answer, or (outcome
    "retrying") the last transient one; `removal` when that answer removed it."""

    notification_id: str
    device_id: str
    channel: str
    platform: str | None
    environment: str | None
    outcome: str
    status: int | None
    reason: str | None
    apns_id: str | None
    attempts: int
    first_attempt_at: int | None
    answered_at: int
    removal: DeviceRemoval | None


@dataclass(frozen=True, slots=True)
class NotificationStatus:
    """A notification as its producer sees it: who it is for, when, and its channels."""

    id: str
    user_id: str
    created_at: int
    channels: list[ChannelStatus]
