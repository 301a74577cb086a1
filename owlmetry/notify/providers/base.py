"""The push provider interface: what the `mobile_push` channel needs from one platform's push
service (APNs, FCM). A provider is a channel without targets of its own: the channel claims the
recipient's devices and hands each to the provider of its platform. This module must not know
any provider.
"""

import abc
from collections.abc import Callable

from owlmetry.config import Config
from owlmetry.notify.channels.base import Answer, ConnectionStats
from owlmetry.store import Claim, NotificationContent, PushTarget


class Provider(abc.ABC):
    # What the provider is called in reasons (say, "APNs").
    service: str
    # Why this provider cannot send at all (say, no credentials): its devices are skipped.
    unavailable: str | None = None

    @staticmethod
    def check_content(content: NotificationContent) -> None:
        """Raise ValueError if `content` can never be sent through this provider."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Config) -> "Provider": ...

    @abc.abstractmethod
    def prepare(self, claim: Claim) -> object:
        """The message for this delivery, built once for all of the recipient's devices."""

    @abc.abstractmethod
    async def send(self, prepared: object, target: PushTarget) -> Answer:
        """Send to one device; an Answer for anything that goes wrong."""

    @abc.abstractmethod
    def send_soon(self, prepared: object, target: PushTarget,
                  on_answer: Callable[[Answer], None]) -> None:
        """Send without waiting: `on_answer(answer)` is called once, later, from the loop."""

    def connection_stats(self) -> dict[str, ConnectionStats]:
        """By environment, the provider's connections now (cheap: read at every scrape)."""
        return {}

    async def close(self) -> None:
        """Release connections; sends still running end with a RETRY answer."""
