"""The dispatcher with push options, against the mock APNs hosts and the mock FCM on both
backends: a notification past its expiry when claimed is not sent to any device."""

import dataclasses
import time

from owlmetry.push_options import PushOptions
from tests.notify.conftest import CONTENT, user_with_devices, wait_done
from tests.notify.test_mobile_push import fcm_token, pushes_by_token, register_android


async def test_a_notification_claimed_after_its_expiry_fails_unsent(
        store, mocks, fcm_mock, mobile_push, dispatchers):
    user_id, (ios,) = await user_with_devices(store, ["production"], 0)
    await register_android(store, user_id, fcm_token(1))
    received = mocks.production.record()
    expiration = int(time.time()) - 1  # as after an outage longer than its time to live
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([user_id], dataclasses.replace(
        CONTENT, options=PushOptions(expiration=expiration)))
    progress = await wait_done(store, ids)

    assert received == [] and sum(fcm_mock.stats.requests.values()) == 0
    assert progress.deliveries == {"failed": 1} and progress.pushes == {"failed": 2}
    reason = f"expired before it could be sent (expiration {expiration})"
    assert await pushes_by_token(store) == {ios: ["mobile_push", "failed", reason],
                                            fcm_token(1): ["mobile_push", "failed", reason]}


async def test_try_once_is_sent(store, mocks, fcm_mock, mobile_push, dispatchers):
    user_id, (ios,) = await user_with_devices(store, ["production"], 0)
    received = mocks.production.record()
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    ids = await dispatcher.enqueue([user_id], dataclasses.replace(
        CONTENT, options=PushOptions(expiration=0)))
    assert (await wait_done(store, ids)).pushes == {"delivered": 1}
    assert received[0].headers["apns-expiration"] == "0"
