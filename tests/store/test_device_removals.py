"""The removed devices' audit rows and the waiting devices' retries, through the store's own
write (save_outcomes), on a real SQLite file and a real PostgreSQL database: what is kept, what
`owlmetry devices removed` reads, and the retention's pruning."""

import dataclasses
import uuid

from owlmetry.retention import DAY_MS, Cleaned, clean_up
from owlmetry.store import (
    DeliveryEnd,
    DeliveryStatus,
    DeviceRegistration,
    NotificationContent,
    PushOutcome,
    PushRecord,
)

NOW = 1_800_000_000_000
TOKEN = "ab" * 32


async def recipient_with_device(store, registered_at: int, token: str = TOKEN):
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)
    device = await store.register_device(
        str(uuid.uuid4()), user.id,
        DeviceRegistration("mobile_push", token, "production", None, None, None), registered_at)
    (notification_id,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id)], NotificationContent("t", "T"), ["mobile_push"],
        registered_at)
    return user.id, device.id, notification_id


def dead(notification_id, device_id, invalid_since, reason="Unregistered", status=410):
    return PushRecord(notification_id, device_id, "mobile_push", PushOutcome.REMOVED, status,
                      reason, invalid_since, "ios", "production", "apns-1", invalid_since, NOW)


async def test_a_removed_device_leaves_an_audit_row_without_its_token(store):
    user_id, device_id, notification_id = await recipient_with_device(store, NOW - 5000)

    stored = await store.save_outcomes("me", [dead(notification_id, device_id, NOW - 10)], [],
                                       NOW)

    assert [r.outcome for r in stored] == ["removed"]
    (removal,) = await store.device_removals(0, "", 10)
    assert dataclasses.astuple(removal) == (
        device_id, user_id, "mobile_push", "ios", "production", TOKEN[:8] + "…",
        notification_id, 410, "Unregistered", NOW - 10, NOW)
    assert await store.execute("SELECT count(*) FROM user_devices") == [(0,)]
    rows = await store.execute("SELECT * FROM device_removals")
    assert TOKEN not in str(rows)


async def test_a_device_registered_again_after_the_answer_is_kept_and_not_audited(store):
    _, device_id, notification_id = await recipient_with_device(store, NOW - 5)

    (stored,) = await store.save_outcomes(
        "me", [dead(notification_id, device_id, NOW - 1000)], [], NOW)

    assert stored.outcome == "failed" and stored.apns_id == "apns-1"
    assert await store.device_removals(0, "", 10) == []


async def test_the_list_pages_from_a_time_on(store):
    removed = []
    for n in range(3):
        _, device_id, notification_id = await recipient_with_device(store, 1, f"{n:02d}" * 32)
        await store.save_outcomes("me", [dead(notification_id, device_id, None,
                                              "BadDeviceToken", 400)], [], NOW + n)
        removed.append(device_id)
    assert [r.device_id for r in await store.device_removals(0, "", 10)] == removed
    assert [r.device_id for r in await store.device_removals(NOW + 1, "", 10)] == removed[1:]
    (first,) = await store.device_removals(NOW + 1, "", 1)
    assert [r.device_id for r in await store.device_removals(NOW + 1, first.device_id, 10)] \
        == removed[2:]


async def test_retries_count_attempts_and_keep_the_first_ones_time(store):
    _, device_id, notification_id = await recipient_with_device(store, 1)
    waiting = PushRecord(notification_id, device_id, "mobile_push", PushOutcome.RETRY, 503,
                         "ServiceUnavailable", None, "ios", "production", None, None, NOW)
    await store.save_outcomes("me", [waiting], [], NOW + 1)
    await store.save_outcomes("me", [dataclasses.replace(waiting, attempted_at=NOW + 50)], [],
                              NOW + 51)
    (device,) = await store.device_statuses([notification_id], None, 10)
    assert (device.outcome, device.attempts, device.first_attempt_at, device.answered_at) == (
        "retrying", 2, NOW, NOW + 51)

    delivered = dataclasses.replace(waiting, outcome=PushOutcome.DELIVERED, status=200,
                                    reason=None, apns_id="apns-2", attempted_at=NOW + 100)
    stored = await store.save_outcomes("me", [delivered], [], NOW + 101)
    assert [r.outcome for r in stored] == ["delivered"]  # a retry is never an answer
    (device,) = await store.device_statuses([notification_id], None, 10)
    assert (device.outcome, device.attempts, device.first_attempt_at, device.answered_at,
            device.apns_id, device.status) == ("delivered", 3, NOW, NOW + 101, "apns-2", 200)


async def test_audit_rows_follow_the_retention_of_deleted_notifications(store, config):
    for days in (91, 89):
        _, device_id, notification_id = await recipient_with_device(store, 1, f"{days}" * 32)
        await store.save_outcomes("me", [dead(notification_id, device_id, None)], [],
                                  NOW - days * DAY_MS)
    keep = dataclasses.replace(config, retention_deleted_days=0)
    assert await clean_up(store, keep, NOW) == Cleaned()
    assert len(await store.device_removals(0, "", 10)) == 2

    assert await clean_up(store, config, NOW) == Cleaned(device_removals=1)
    (left,) = await store.device_removals(0, "", 10)
    assert left.removed_at == NOW - 89 * DAY_MS


async def test_a_delivery_keeps_its_counts_with_its_end_a_kept_token_a_failure(store):
    _, device_id, notification_id = await recipient_with_device(store, NOW - 5)
    await store.execute("UPDATE notification_deliveries SET claimed_by = 'me'")
    end = DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.FAILED, "no device",
                      None, (0, 1, 0, 0))

    # Registered again after the 410's timestamp: kept, and counted as the failure it is.
    await store.save_outcomes("me", [dead(notification_id, device_id, NOW - 1000)], [end], NOW)

    (status,) = (await store.notification_statuses([notification_id])).values()
    (channel,) = status.channels
    assert (channel.status, channel.finished_at) == ("failed", NOW)
    assert channel.devices == {"delivered": 0, "removed": 0, "failed": 1, "skipped": 0}


async def test_one_write_of_every_kind_of_answer_stores_each_as_it_should(store):
    """A batch of answers with a delivery, a device waiting for a retry, a dead token and a
    dead token whose device was registered again since, in one write: each stored as the
    separate writes would (on PostgreSQL two statements, on SQLite one step of the writer)."""
    user_id, gone_id, notification_id = await recipient_with_device(store, NOW - 5000)
    kept_id = (await store.register_device(
        str(uuid.uuid4()), user_id, DeviceRegistration("mobile_push", "cd" * 32, "production",
                                                        None, None, None), NOW - 5)).id
    waiting_id = (await store.register_device(
        str(uuid.uuid4()), user_id, DeviceRegistration("mobile_push", "ef" * 32, "production",
                                                       None, None, None), NOW - 5)).id
    delivered_id = (await store.register_device(
        str(uuid.uuid4()), user_id, DeviceRegistration("mobile_push", "12" * 32, "production",
                                                       None, None, None), NOW - 5)).id
    await store.execute("UPDATE notification_deliveries SET claimed_by = 'me'")
    delivered = PushRecord(notification_id, delivered_id, "mobile_push", PushOutcome.DELIVERED,
                           200, None, None, "ios", "production", "apns-2", NOW - 20)
    waiting = PushRecord(notification_id, waiting_id, "mobile_push", PushOutcome.RETRY, 429,
                         "TooManyRequests", None, "ios", "production", None, NOW - 20)
    end = DeliveryEnd(notification_id, "mobile_push", DeliveryStatus.PENDING, "2 retrying",
                      NOW + 5000)

    stored = await store.save_outcomes("me", [
        delivered, waiting, dead(notification_id, gone_id, NOW - 10),
        dead(notification_id, kept_id, NOW - 1000)], [end], NOW)

    assert {r.device_id: r.outcome for r in stored} == {
        delivered_id: "delivered", gone_id: "removed", kept_id: "failed"}
    assert sorted(d.id for d in await store.list_devices(user_id)) == sorted(
        [kept_id, waiting_id, delivered_id])
    assert [r.device_id for r in await store.device_removals(0, "", 10)] == [gone_id]
    devices = {d.device_id: d for d in await store.device_statuses([notification_id], None, 10)}
    assert {device_id: d.outcome for device_id, d in devices.items()} == {
        delivered_id: "delivered", gone_id: "removed", kept_id: "failed",
        waiting_id: "retrying"}
    assert devices[kept_id].reason == "Unregistered (registered again since; kept)"
    assert (devices[waiting_id].attempts, devices[waiting_id].status) == (1, 429)
    (status,) = (await store.notification_statuses([notification_id])).values()
    (channel,) = status.channels
    assert channel.status == "pending"


async def test_a_device_dead_by_one_answer_of_a_batch_goes_whatever_the_others_say(store):
    # Two notifications to one device answered in one write: one answer predates the device's
    # last registration, the other does not. The device goes; both records say removed.
    user_id, device_id, first = await recipient_with_device(store, NOW - 500)
    (second,) = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user_id)], NotificationContent("t", "T"), ["mobile_push"], NOW)

    stored = await store.save_outcomes("me", [dead(first, device_id, NOW - 1000),
                                              dead(second, device_id, NOW - 10)], [], NOW)

    assert [r.outcome for r in stored] == ["removed", "removed"]
    assert await store.list_devices(user_id) == []
    assert [r.device_id for r in await store.device_removals(0, "", 10)] == [device_id]
