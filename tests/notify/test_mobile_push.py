"""The mobile_push channel: every push device of the recipient, routed by platform (iOS to
APNs on its environment's host, Android to FCM, or skipped with the reason when FCM is not
configured), on both backends against the mock APNs hosts and the mock FCM."""

import asyncio
import logging
import uuid

from owlmetry.clock import now_ms
from owlmetry.notify.channels.mobile_push import MobilePush
from owlmetry.notify.providers.fcm import NOT_CONFIGURED
from owlmetry.store import DeviceRegistration, Platform
from tests.notify.conftest import CONTENT, server_log, token, wait_done
from tests.provider_mocks import unconfigured_push

ANDROID_REASON = ("FCM is not configured: FCM_SERVICE_ACCOUNT_PATH (or FCM_SERVICE_ACCOUNT) "
                  "unset")


def fcm_token(i: int, prefix: str = "fcm") -> str:
    return f"{prefix}{i}:APA91b" + "Xy_-" * 36


async def register_android(store, user_id: str, device_token: str,
                           environment: str = "production") -> None:
    await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
        "mobile_push", device_token, environment, None, None, None, Platform.ANDROID), now_ms())


async def tokens_registered(store) -> list[str]:
    return [t for (t,) in await store.execute("SELECT token FROM user_devices ORDER BY token")]


async def new_user(store) -> str:
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                   now_ms())
    return user.id


async def user_with_both_platforms(store, first: int) -> tuple[str, dict[str, str]]:
    """A user with, in each environment, an iOS device registered the seed's way (ios_push),
    one registered today's way (mobile_push) and an Android one: token -> platform."""
    user_id = await new_user(store)
    devices = {}
    for n, environment in enumerate(["production", "sandbox"]):
        for channel, platform, device_token in [
                ("ios_push", Platform.IOS, token(first + 3 * n)),
                ("mobile_push", Platform.IOS, token(first + 3 * n + 1)),
                ("mobile_push", Platform.ANDROID, fcm_token(first + 3 * n + 2))]:
            await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
                channel, device_token, environment, None, None, None, platform), now_ms())
            devices[device_token] = platform, environment
    return user_id, devices


async def pushes_by_token(store) -> dict[str, list]:
    rows = await store.execute(
        "SELECT d.token, p.channel, p.outcome, p.reason FROM notification_pushes AS p "
        "JOIN user_devices AS d ON d.id = p.device_id")
    return {device_token: rest for device_token, *rest in rows}


async def test_every_device_of_both_platforms_in_both_environments_gets_the_notification(
        store, mocks, fcm_mock, mobile_push, dispatchers, caplog):
    caplog.set_level(logging.DEBUG)
    (alice, alices), (bob, bobs) = [await user_with_both_platforms(store, n) for n in (0, 10)]
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([alice, bob], CONTENT)
    progress = await wait_done(store, ids)

    devices = alices | bobs
    assert len(devices) == 12
    for device_token, (platform, environment) in devices.items():
        if platform == Platform.ANDROID:
            assert fcm_mock.stats.delivered[device_token] == 1, device_token
            assert mocks.requests(device_token) == 0
            continue
        host, other = ((mocks.production, mocks.sandbox) if environment == "production"
                       else (mocks.sandbox, mocks.production))
        assert host.stats.delivered[device_token] == 1, device_token
        assert other.stats.requests[device_token] == 0
    assert progress.deliveries == {"sent": 2}
    assert progress.pushes == {"delivered": 12}
    recorded = await pushes_by_token(store)
    assert all(recorded[t] == ["mobile_push", "delivered", None] for t in devices)
    # The Android message: the contract's data and the unread count.
    message = fcm_mock.stats.payloads[fcm_token(2)]
    assert message["notification"] == {"title": CONTENT.title, "body": CONTENT.body}
    assert message["data"] == {"feedback_id": "f1", "link": CONTENT.link, "type": CONTENT.type,
                               "notification_id": ids[0]}
    assert message["android"]["notification"]["notification_count"] == 1
    assert message["android"]["priority"] == "HIGH"
    assert fcm_mock.stats.token_requests == 1
    logged = server_log(caplog)
    assert not [device_token for device_token in devices if device_token in logged]


async def test_dead_android_tokens_are_removed_and_a_failure_is_recorded_with_fcms_reason(
        store, fcm_mock, mobile_push, dispatchers, caplog):
    caplog.set_level(logging.DEBUG)
    fcm_mock.behaviour.dead_prefixes = ("dead",)
    fcm_mock.behaviour.mismatch_prefixes = ("other",)
    fcm_mock.behaviour.invalid_prefixes = ("bad",)
    user_id = await new_user(store)
    dead, foreign, bad, alive = (fcm_token(1, "dead"), fcm_token(2, "other"),
                                 fcm_token(3, "bad"), fcm_token(4))
    for device_token in (dead, foreign, bad, alive):
        await register_android(store, user_id, device_token)
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))

    assert progress.deliveries == {"sent": 1}
    assert progress.pushes == {"delivered": 1, "removed": 3}
    assert await tokens_registered(store) == [alive]
    reasons = sorted(reason for _, reason in await store.execute(
        "SELECT outcome, reason FROM notification_pushes WHERE outcome = 'removed'"))
    assert reasons == ["INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "UNREGISTERED"]
    logged = server_log(caplog)
    assert not [t for t in (dead, foreign, bad, alive) if t in logged]


async def test_an_android_token_registered_again_during_the_send_is_not_removed(
        store, fcm_mock, mobile_push, dispatchers):
    fcm_mock.behaviour.dead_prefixes = ("dead",)
    fcm_mock.behaviour.latency_s = 0.5  # the app registers again while FCM thinks it over
    user_id = await new_user(store)
    device_token = fcm_token(1, "dead")
    await register_android(store, user_id, device_token)
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([user_id], CONTENT)
    while fcm_mock.stats.requests[device_token] == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)  # the registration's millisecond is after the send's
    await register_android(store, user_id, device_token)
    progress = await wait_done(store, ids)

    assert fcm_mock.stats.requests[device_token] == 1
    assert await tokens_registered(store) == [device_token]
    # Stored as a failure (the token may be a new one), not as a removal.
    assert progress.pushes == {"failed": 1}


async def test_without_fcm_android_devices_are_skipped_naming_the_variables(
        store, mocks, fcm_mock, mobile_push, dispatchers):
    user_id, devices = await user_with_both_platforms(store, 0)
    dispatcher = dispatchers({"mobile_push": mobile_push(android=False)})
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"sent": 1}
    assert progress.pushes == {"delivered": 4, "skipped": 2}
    recorded = await pushes_by_token(store)
    for device_token, (platform, _) in devices.items():
        if platform == Platform.ANDROID:
            assert recorded[device_token] == ["mobile_push", "skipped", ANDROID_REASON]
    assert sum(fcm_mock.stats.requests.values()) == 0 and fcm_mock.stats.token_requests == 0


async def test_a_recipient_with_only_android_devices_and_no_fcm_is_skipped_not_failed(
        store, mobile_push, dispatchers):
    user_id = await new_user(store)
    await register_android(store, user_id, fcm_token(1))
    dispatcher = dispatchers({"mobile_push": mobile_push(android=False)})
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"skipped": 1} and progress.pushes == {"skipped": 1}


async def test_without_apns_and_fcm_every_device_is_skipped_with_the_missing_variables(
        store, dispatchers):
    user_id, devices = await user_with_both_platforms(store, 0)
    channel = unconfigured_push()
    assert NOT_CONFIGURED == ANDROID_REASON
    assert channel.unavailable == ("APNs is not configured: APNS_KEY_ID, APNS_KEY_P8 unset; "
                                   f"{ANDROID_REASON}")
    dispatcher = dispatchers({"mobile_push": channel})
    ids = await dispatcher.enqueue([user_id], CONTENT)
    progress = await wait_done(store, ids)
    assert progress.deliveries == {"skipped": 1} and progress.pushes == {"skipped": 6}
    recorded = await pushes_by_token(store)
    assert {reason for _, _, reason in recorded.values()} == {channel.unavailable}


def test_a_platform_without_a_provider_says_why_it_is_skipped():
    channel = MobilePush({})  # no provider at all: every platform says why it is skipped
    assert channel.unavailable == ("ios push is not available (no provider); "
                                   "android push is not available (no provider)")


async def test_a_quota_fcm_asks_to_wait_out_holds_the_delivery_that_long(
        store, fcm_mock, mobile_push, dispatchers):
    # Retry-After beyond the send's deadline: the client hands the wait to the dispatcher,
    # whose own backoff (20 ms in these tests) must not send again before FCM's minute is up.
    fcm_mock.behaviour.quota_next = 1
    fcm_mock.behaviour.retry_after_s = 120
    user_id = await new_user(store)
    device_token = fcm_token(1)
    await register_android(store, user_id, device_token)
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    [notification_id] = await dispatcher.enqueue([user_id], CONTENT)
    asked = now_ms()

    async def put_back() -> int:  # the delivery, back in the queue with the quota's reason
        while True:
            rows = await store.execute(
                "SELECT available_at FROM notification_deliveries WHERE notification_id = $1 "
                "AND status = 'pending' AND reason IS NOT NULL", notification_id)
            if rows:
                return rows[0][0]
            await asyncio.sleep(0.02)

    available_at = await asyncio.wait_for(put_back(), 20)

    assert available_at >= asked + 115_000
    assert fcm_mock.stats.requests[device_token] == 1
