"""The channel interface as a new channel would use it: only `send`, in its own class."""

import uuid

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.notify.channels import channel_types
from owlmetry.notify.channels.base import Answer, Channel
from owlmetry.store import DeviceChannel, DeviceRegistration, TargetKind, Targets
from tests.notify.conftest import CONTENT, wait_done


class WebhookLike(Channel):
    """A channel that knows nothing but `async send`: answers come from the token's text."""

    name = "webhook"
    targets = Targets(TargetKind.DEVICES, ("webhook",))

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    @classmethod
    def from_config(cls, config: Config) -> "WebhookLike":
        return cls()

    def prepare(self, claim) -> str:
        return f"{claim.content.title} ({claim.unread} unread)"

    async def send(self, prepared, target) -> Answer:
        if target.token.startswith("crash"):
            raise RuntimeError("a bug in the channel")
        self.sent.append((target.token, prepared))
        if target.token.startswith("gone"):
            return Answer("removed", 410, "Gone")
        return Answer("delivered", 200)


async def test_a_channel_with_only_an_async_send_needs_nothing_else(store, dispatchers):
    user = await store.create_user(str(uuid.uuid4()), "erin@example.com", now_ms())
    for url in ("https://a.example", "gone-https://b.example", "crash-https://c.example"):
        await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
            "webhook", url, "production", None, None, None), now_ms())
    channel = WebhookLike()
    dispatcher = dispatchers({"webhook": channel}, max_attempts=2)

    progress = await wait_done(store, await dispatcher.enqueue([user.id], CONTENT))

    assert sorted(channel.sent) == [("gone-https://b.example", "New feedback (1 unread)"),
                                    ("https://a.example", "New feedback (1 unread)")]
    # The raising send became a retry, then a failure after the bounded attempts.
    assert progress.pushes == {"delivered": 1, "removed": 1, "failed": 1}
    assert progress.deliveries == {"sent": 1}
    assert len(await store.list_devices(user.id)) == 2


def test_channels_are_found_by_folder_and_say_what_they_send_to():
    assert {name: kind.targets for name, kind in channel_types().items()} == {
        "email": Targets(TargetKind.RECIPIENT),
        "mobile_push": Targets(TargetKind.DEVICES,
                               (DeviceChannel.IOS_PUSH, DeviceChannel.MOBILE_PUSH))}
