"""The channel interface: what the dispatcher needs from a way of reaching a user.

A channel is one module in this package that sets `CHANNEL` to a `Channel` subclass; nothing
outside that module changes when a channel is added. This module sets no `CHANNEL`, so the
discovery passes it by. A channel's `targets` (`owlmetry.store.Targets`) say what its claims
send to: the recipient's devices registered with some device channels (`user_devices.channel`),
or the recipient user itself. This module must not know any channel.
"""

import abc
import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from owlmetry.config import Config
from owlmetry.frozen import quick_init
from owlmetry.store import Claim, NotificationContent, PushOutcome, PushTarget, Targets


@quick_init
@dataclass(frozen=True, slots=True)
class Answer:
    """What one send came to.

    `outcome`: DELIVERED; REMOVED (the device's token is dead: its row is deleted unless it
    was registered again after `invalid_since`, ms, when given); FAILED (permanent, `reason`
    says why); or RETRY (transient: the dispatcher sends again later, and not before
    `retry_after_ms` when the provider asked for that wait, as FCM's Retry-After does).
    `apns_id`: the provider's id of the message (APNs' apns-id, FCM's message name);
    `provider_at`: the provider's own timestamp of a dead token (APNs' 410); both for the
    producer's status.
    """

    outcome: PushOutcome
    status: int | None = None
    reason: str | None = None
    invalid_since: int | None = None
    retry_after_ms: int | None = None
    apns_id: str | None = None
    provider_at: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A channel's connections to one environment's push service at one moment (/metrics)."""

    connections: int
    in_flight: int  # sends on the wire, waiting for their answer
    queued: int  # sends waiting for room on a connection


class Sender(abc.ABC):
    """What reaches one target at a time: a channel, or one platform's push provider behind
    the `mobile_push` channel (`owlmetry.notify.providers`), which has no targets of its own."""

    # Why this cannot send at all (say, no credentials): its targets are skipped.
    unavailable: str | None = None

    @staticmethod
    def check_content(content: NotificationContent, config: Config | None = None) -> None:
        """Raise ValueError if `content` can never be sent this way (too large, ...) by a
        server with `config` (a provider that is not configured there checks nothing)."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Config) -> "Sender": ...

    @abc.abstractmethod
    def prepare(self, claim: Claim) -> object:
        """What `send` needs for this delivery (built once for all of the recipient's targets)."""

    @abc.abstractmethod
    async def send(self, prepared: object, target: PushTarget) -> Answer:
        """Send to one target. Must return an Answer for anything that goes wrong."""

    def send_soon(self, prepared: object, target: PushTarget,
                  on_answer: Callable[[Answer], None],
                  live: Callable[[], bool] | None = None) -> None:
        """Send without waiting: `on_answer(answer)` is called once, later, from the loop.

        The dispatcher sends this way. `live`, when given, is asked before the send goes out
        (and before any attempt again): once it says False the send does not start and is
        answered RETRY -- the dispatcher's lease on the work ran out. This version runs `send`
        in a task, asking `live` as the task starts; a sender whose transport takes callbacks
        overrides it to save the task per device."""
        task = asyncio.create_task(_send_if_live(self, prepared, target, live))
        _running.add(task)
        task.add_done_callback(functools.partial(_answer_of, on_answer))

    def connection_stats(self) -> dict[str, ConnectionStats]:
        """By environment, the connections now; read at every scrape, so cheap. A sender
        without connections of its own has none to report."""
        return {}

    async def close(self) -> None:
        """Release connections; sends still running end with a RETRY answer."""


class Channel(Sender):
    """A delivery channel: what the dispatcher hands a claimed delivery's targets to."""

    name: ClassVar[str]  # the delivery channel: `notification_deliveries.channel`
    # What a delivery of this channel is sent to; the dispatcher passes it to every claim.
    targets: ClassVar[Targets]


log = logging.getLogger("owlmetry.notify")
_running: set[asyncio.Task] = set()  # sends in flight, kept from the garbage collector


NOT_LIVE = Answer(PushOutcome.RETRY, None, "not sent: the dispatcher's lease ran out")


async def _send_if_live(sender: Sender, prepared: object, target: PushTarget,
                        live: Callable[[], bool] | None) -> Answer:
    if live is not None and not live():
        return NOT_LIVE
    return await sender.send(prepared, target)


def _answer_of(on_answer: Callable[[Answer], None], task: asyncio.Task) -> None:
    _running.discard(task)
    if task.cancelled():
        answer = Answer(PushOutcome.RETRY, None, "cancelled")
    elif task.exception() is not None:  # a channel bug must not lose the delivery
        log.error("a channel raised on send", exc_info=task.exception())
        answer = Answer(PushOutcome.RETRY, None,
                        f"internal error: {type(task.exception()).__name__}")
    else:
        answer = task.result()
    on_answer(answer)
