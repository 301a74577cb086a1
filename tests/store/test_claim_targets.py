"""What a claim reads as a delivery's targets, per the channel's `Targets`: the recipient's
devices of the device channels it serves (with their platform), or the recipient user itself
(id and email address); on a later attempt only those without an answer. Both backends."""

import uuid

from owlmetry.store import (
    DeviceRegistration,
    NotificationContent,
    Platform,
    PushOutcome,
    PushRecord,
    PushTarget,
    TargetKind,
    Targets,
    deliveries,
)

PUSH = Targets(TargetKind.DEVICES, ("ios_push", "mobile_push"))
EMAIL = Targets(TargetKind.RECIPIENT)
CONTENT = NotificationContent("feedback.new", "New feedback")


async def test_each_channel_reads_its_own_targets(store):
    user = await store.create_user(str(uuid.uuid4()), "Kim@Example.com", 1)
    devices = {}
    for channel, platform, device_token, environment in [
            ("ios_push", Platform.IOS, "aa" * 16, "production"),
            ("mobile_push", Platform.IOS, "bb" * 16, "sandbox"),
            ("mobile_push", Platform.ANDROID, "fcm:Token-Of_Android", "production"),
            ("webhook", Platform.IOS, "https://hook.example", "production")]:  # served by none
        device = await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
            channel, device_token, environment, None, None, None, platform), 1)
        devices[device_token] = device.id
    (notification_id,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id)], CONTENT, ["mobile_push", "email", "unknown"], 2)

    claims = await store.claim_deliveries("owner", 3, 30_000, 10,
                                          targets={"mobile_push": PUSH, "email": EMAIL})

    targets = {claim.channel: sorted(claim.targets, key=lambda t: t.token) for claim in claims}
    assert targets == {
        "mobile_push": [
            PushTarget(devices["aa" * 16], "aa" * 16, "production", "ios"),
            PushTarget(devices["bb" * 16], "bb" * 16, "sandbox", "ios"),
            PushTarget(devices["fcm:Token-Of_Android"], "fcm:Token-Of_Android", "production",
                       "android")],
        "email": [PushTarget(user.id, "kim@example.com", None, None)],
        "unknown": []}  # a channel the claim was not told about has nothing to send to

    # Claimed again (a crash, a retry): only what has no answer on record yet.
    answered = [PushRecord(notification_id, devices["aa" * 16], "mobile_push",
                           PushOutcome.DELIVERED, 200, None),
                PushRecord(notification_id, user.id, "email", PushOutcome.DELIVERED, None, None)]
    await store.save_outcomes("owner", answered, [], 4)
    await store.execute("UPDATE notification_deliveries SET available_at = 0")
    again = await store.claim_deliveries("owner", 5, 30_000, 10,
                                         targets={"mobile_push": PUSH, "email": EMAIL})
    left = {claim.channel: sorted(t.token for t in claim.targets) for claim in again}
    assert left == {"mobile_push": ["bb" * 16, "fcm:Token-Of_Android"], "email": [],
                    "unknown": []}
    assert {claim.channel: claim.earlier for claim in again}["email"] == {
        PushOutcome.DELIVERED: 1}


async def test_a_removed_answer_under_a_user_id_deletes_no_device(store):
    """An email record's `device_id` is a user id: the dead-token deletion can match none."""
    user = await store.create_user(str(uuid.uuid4()), "lee@example.com", 1)
    device = await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
        "ios_push", "cc" * 16, "production", None, None, None), 1)
    (notification_id,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id)], CONTENT, ["email"], 2)
    await store.save_outcomes("owner", [PushRecord(notification_id, user.id, "email",
                                                   PushOutcome.REMOVED, 550, "gone")], [], 3)
    assert [d.id for d in await store.list_devices(user.id)] == [device.id]


async def test_each_claim_carries_its_own_requests_content(store):
    """The store keeps the contents its claims read (a fan-out reads its content once). Past
    what it keeps, and with requests split across claims (one of them the claim on which the
    store forgets what it kept), every claim still has its own request's content."""
    users = [await store.create_user(str(uuid.uuid4()), f"kim{i}@example.com", 1)
             for i in range(2)]
    expected = {}
    for i in range(deliveries.CONTENTS_KEPT + 6):  # each to two users: claims of 5 split some
        content = NotificationContent("feedback.new", f"Feedback {i}", body=f"body {i}",
                                      data={"n": i})
        ids = await store.enqueue_notifications(
            [(str(uuid.uuid4()), user.id) for user in users], content, ["mobile_push"], 2)
        expected.update((notification_id, content) for notification_id in ids)

    claimed = {}
    while claims := await store.claim_deliveries("owner", 3, 30_000, 5,
                                                 targets={"mobile_push": PUSH}):
        claimed.update((claim.notification_id, claim.content) for claim in claims)

    assert claimed == expected
