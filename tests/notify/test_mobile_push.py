"""The mobile_push channel: every push device of the recipient, routed by platform (iOS to
APNs on its environment's host, Android skipped until an FCM provider exists), on both
backends against the mock APNs hosts."""

import uuid

from owlmetry.clock import now_ms
from owlmetry.notify.channels.mobile_push import NO_PROVIDER, MobilePush
from owlmetry.store import DeviceRegistration, Platform
from tests.notify.conftest import CONTENT, token, unconfigured_push, wait_done

ANDROID_REASON = "Android push is not available yet (no FCM channel)"


def fcm_token(i: int) -> str:
    return f"fcm{i}:APA91b" + "Xy_-" * 36


async def user_with_both_platforms(store, first: int) -> tuple[str, dict[str, str]]:
    """A user with, in each environment, an iOS device registered the seed's way (ios_push),
    one registered today's way (mobile_push) and an Android one: token -> platform."""
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                   now_ms())
    devices = {}
    for n, environment in enumerate(["production", "sandbox"]):
        for channel, platform, device_token in [
                ("ios_push", Platform.IOS, token(first + 3 * n)),
                ("mobile_push", Platform.IOS, token(first + 3 * n + 1)),
                ("mobile_push", Platform.ANDROID, fcm_token(first + 3 * n + 2))]:
            await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
                channel, device_token, environment, None, None, None, platform), now_ms())
            devices[device_token] = platform, environment
    return user.id, devices


async def pushes_by_token(store) -> dict[str, list]:
    rows = await store.execute(
        "SELECT d.token, p.channel, p.outcome, p.reason FROM notification_pushes AS p "
        "JOIN user_devices AS d ON d.id = p.device_id")
    return {device_token: rest for device_token, *rest in rows}


async def test_ios_devices_go_to_apns_on_their_host_and_android_ones_are_skipped(
        store, mocks, mobile_push, dispatchers):
    assert NO_PROVIDER[Platform.ANDROID] == ANDROID_REASON
    (alice, alices), (bob, bobs) = [await user_with_both_platforms(store, n) for n in (0, 10)]
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([alice, bob], CONTENT)
    progress = await wait_done(store, ids)

    devices = alices | bobs
    ios = {t: env for t, (platform, env) in devices.items() if platform == Platform.IOS}
    assert len(ios) == 8 and len(devices) == 12
    for device_token, environment in ios.items():
        host, other = ((mocks.production, mocks.sandbox) if environment == "production"
                       else (mocks.sandbox, mocks.production))
        assert host.stats.delivered[device_token] == 1, device_token
        assert other.stats.requests[device_token] == 0
    assert progress.deliveries == {"sent": 2}
    assert progress.pushes == {"delivered": 8, "skipped": 4}
    recorded = await pushes_by_token(store)
    for device_token, (platform, _) in devices.items():
        if platform == Platform.ANDROID:
            assert recorded[device_token] == ["mobile_push", "skipped", ANDROID_REASON]
            assert mocks.requests(device_token) == 0
        else:
            assert recorded[device_token] == ["mobile_push", "delivered", None]
    assert await store.execute("SELECT DISTINCT channel FROM notification_deliveries") == [
        ("mobile_push",)]


async def test_a_recipient_with_only_android_devices_is_skipped_not_failed(
        store, mobile_push, dispatchers):
    user = await store.create_user(str(uuid.uuid4()), "ann@example.com", now_ms())
    await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
        "mobile_push", fcm_token(1), "production", None, None, None, Platform.ANDROID), now_ms())
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    progress = await wait_done(store, await dispatcher.enqueue([user.id], CONTENT))
    assert progress.deliveries == {"skipped": 1} and progress.pushes == {"skipped": 1}


async def test_without_apns_every_device_is_skipped_with_the_missing_variables(
        store, dispatchers):
    user_id, devices = await user_with_both_platforms(store, 0)
    channel = unconfigured_push()
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
    assert channel.unavailable == (f"ios push is not available (no provider); {ANDROID_REASON}")
