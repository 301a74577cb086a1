"""What /metrics reads from the store: device counts and the queue's depth, on both backends."""

import uuid

from owlmetry.store import DeliveryEnd, DeviceRegistration, NotificationContent

CONTENT = NotificationContent("feedback.new", "New feedback")


async def new_user(store) -> str:
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)
    return user.id


def registration(token: str, channel: str = "ios_push", environment: str = "production"):
    return DeviceRegistration(channel, token, environment, None, None, None)


async def test_device_counts_by_channel_and_environment(store):
    channels = ["ios_push", "webhook"]
    assert await store.device_counts(channels) == {
        ("ios_push", "production"): 0, ("ios_push", "sandbox"): 0,
        ("webhook", "production"): 0, ("webhook", "sandbox"): 0}
    alice, bob = await new_user(store), await new_user(store)
    for user_id, token, environment in [(alice, "aa" * 16, "production"),
                                        (alice, "bb" * 16, "sandbox"),
                                        (bob, "cc" * 16, "production"),
                                        (bob, "aa" * 16, "production")]:  # the same token again
        assert await store.register_device(str(uuid.uuid4()), user_id,
                                           registration(token, environment=environment), 2)
    await store.register_device(str(uuid.uuid4()), bob, registration("dd" * 16, "webhook"), 2)
    assert await store.device_counts(channels) == {
        ("ios_push", "production"): 2, ("ios_push", "sandbox"): 1,
        ("webhook", "production"): 1, ("webhook", "sandbox"): 0}
    assert await store.device_counts(["ios_push"]) == {
        ("ios_push", "production"): 2, ("ios_push", "sandbox"): 1}

    (device,) = [d for d in await store.list_devices(bob) if d.channel == "webhook"]
    await store.delete_device(bob, device.id)
    assert (await store.device_counts(channels))["webhook", "production"] == 0


async def test_pending_deliveries_are_due_or_later(store):
    assert await store.pending_deliveries(1_000) == {"due": 0, "later": 0}
    users = [await new_user(store) for _ in range(4)]
    ids = await store.enqueue_notifications([(str(uuid.uuid4()), u) for u in users], CONTENT,
                                            ["ios_push"], 1_000)
    assert len(ids) == 4
    assert await store.pending_deliveries(999) == {"due": 0, "later": 4}
    assert await store.pending_deliveries(1_000) == {"due": 4, "later": 0}

    claims = await store.claim_deliveries("owner", 2_000, 30_000, 3)
    assert await store.pending_deliveries(2_000) == {"due": 1, "later": 3}  # leased
    first, second, _ = ((c.notification_id, c.channel) for c in claims)
    await store.save_outcomes("owner", [], [DeliveryEnd(*first, "sent", None),
                                            DeliveryEnd(*second, "pending", "503", 10_000)],
                              2_500)
    assert await store.pending_deliveries(2_500) == {"due": 1, "later": 2}  # backoff, lease
    assert await store.pending_deliveries(10_000) == {"due": 2, "later": 1}
