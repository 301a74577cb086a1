"""The `mobile_push` channel: a push to every device of the recipient, by its platform's provider.

Serves the devices registered as `mobile_push` (today's Owlmetry clients, with a platform) and
as the seed's `ios_push` (iOS). Owns which provider serves which platform (`PROVIDERS`) and
what a device of a platform without a usable provider is answered: skipped, with the reason.
Must not know how a provider reaches a device (`owlmetry.notify.providers`).
"""

import asyncio
from collections.abc import Callable, Mapping

from owlmetry.config import Config
from owlmetry.notify.channels.base import Answer, Channel, ConnectionStats, Sender
from owlmetry.notify.providers.apns import APNs
from owlmetry.notify.providers.fcm import FCM
from owlmetry.store import (
    Claim,
    DeviceChannel,
    NotificationContent,
    Platform,
    PushOutcome,
    PushTarget,
    TargetKind,
    Targets,
)

# The provider of each platform (its module in providers/).
PROVIDERS: dict[Platform, type[Sender]] = {Platform.IOS: APNs, Platform.ANDROID: FCM}


class MobilePush(Channel):
    name = "mobile_push"
    targets = Targets(TargetKind.DEVICES, (DeviceChannel.IOS_PUSH, DeviceChannel.MOBILE_PUSH))

    def __init__(self, providers: Mapping[Platform, Sender]):
        self._providers = dict(providers)
        self._ready = {platform: provider for platform, provider in providers.items()
                       if not provider.unavailable}
        # The answer of every device whose platform cannot be sent to, made once.
        self._skipped = {platform: Answer(PushOutcome.SKIPPED, None, self._why_not(platform))
                         for platform in Platform if platform not in self._ready}
        if not self._ready:
            self.unavailable = "; ".join(answer.reason for answer in self._skipped.values())

    def _why_not(self, platform: Platform) -> str:
        provider = self._providers.get(platform)
        if provider is not None:
            return provider.unavailable
        return f"{platform} push is not available (no provider)"

    @staticmethod
    def check_content(content: NotificationContent, config: Config | None = None) -> None:
        for provider in PROVIDERS.values():
            provider.check_content(content, config)

    @classmethod
    def from_config(cls, config: Config) -> "MobilePush":
        return cls({platform: kind.from_config(config) for platform, kind in PROVIDERS.items()})

    def prepare(self, claim: Claim) -> dict[str, object]:
        return {platform: provider.prepare(claim) for platform, provider in self._ready.items()}

    async def send(self, prepared: dict[str, object], target: PushTarget) -> Answer:
        provider = self._ready.get(target.platform)
        if provider is None:
            return self._not_sent(target)
        return await provider.send(prepared[target.platform], target)

    def send_soon(self, prepared: dict[str, object], target: PushTarget,
                  on_answer: Callable[[Answer], None],
                  live: Callable[[], bool] | None = None) -> None:
        provider = self._ready.get(target.platform)
        if provider is None:
            asyncio.get_running_loop().call_soon(on_answer, self._not_sent(target))
            return
        provider.send_soon(prepared[target.platform], target, on_answer, live)

    def _not_sent(self, target: PushTarget) -> Answer:
        skipped = self._skipped.get(target.platform)
        if skipped is None:  # a platform the registry should never hold
            return Answer(PushOutcome.FAILED, None, f"unknown platform: {target.platform}")
        return skipped

    def connection_stats(self) -> dict[str, ConnectionStats]:
        stats: dict[str, ConnectionStats] = {}
        for provider in self._providers.values():
            stats.update(provider.connection_stats())
        return stats

    async def close(self) -> None:
        await asyncio.gather(*(provider.close() for provider in self._providers.values()))


CHANNEL = MobilePush
