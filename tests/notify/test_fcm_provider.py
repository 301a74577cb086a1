"""The FCM provider on its own: what each of FCM's decisions is recorded as, the start-up line
either way, and a notification FCM would refuse that was enqueued while FCM was not configured."""

import asyncio
import logging

from owlmetry.config import Config
from owlmetry.fcm import Decision, FcmAnswer
from owlmetry.notify.providers.fcm import FCM, NOT_CONFIGURED, answer_for
from owlmetry.store import Claim, NotificationContent, Platform, PushOutcome, PushTarget

STARTED = 1_700_000_000_000


def test_each_decision_maps_onto_an_answer():
    assert answer_for(FcmAnswer(Decision.DELIVERED, 200), STARTED).outcome is PushOutcome.DELIVERED
    removed = answer_for(FcmAnswer(Decision.REMOVE, 404, "UNREGISTERED", "gone"), STARTED)
    # FCM gives no timestamp: the send's start guards a device registered again since.
    assert (removed.outcome, removed.status, removed.reason, removed.invalid_since) == (
        PushOutcome.REMOVED, 404, "UNREGISTERED", STARTED)
    failed = answer_for(FcmAnswer(Decision.FAIL, 403, "PERMISSION_DENIED",
                                  "check FCM_SERVICE_ACCOUNT's project_id"), STARTED)
    assert (failed.outcome, failed.status) == (PushOutcome.FAILED, 403)
    assert failed.reason == "PERMISSION_DENIED: check FCM_SERVICE_ACCOUNT's project_id"
    for decision in (Decision.BACKOFF, Decision.RETRY_AFTER):
        later = answer_for(FcmAnswer(decision, 503, "UNAVAILABLE", "UNAVAILABLE"), STARTED)
        assert (later.outcome, later.reason, later.invalid_since) == (
            PushOutcome.RETRY, "UNAVAILABLE", None)
    lost = answer_for(FcmAnswer(Decision.BACKOFF, 0, "Timeout", "Timeout"), STARTED)
    assert (lost.outcome, lost.status) == (PushOutcome.RETRY, None)


def test_start_up_says_where_android_pushes_go_or_why_not(caplog, fcm_account):
    caplog.set_level(logging.INFO, "owlmetry.notify")
    provider = FCM.from_config(Config())
    assert provider.unavailable == NOT_CONFIGURED
    assert f"Android devices will be skipped: {NOT_CONFIGURED}" in caplog.text
    caplog.clear()

    async def configured():
        provider = FCM.from_config(Config(fcm=fcm_account))
        await provider.close()
        return provider

    assert asyncio.run(configured()).unavailable is None
    assert ("Android devices go to FCM at https://fcm.googleapis.com for Firebase project "
            "owl-test") in caplog.text
    assert "PRIVATE KEY" not in caplog.text


async def test_a_reserved_data_key_enqueued_without_fcm_fails_the_android_push():
    provider = FCM(None, None)  # never reaches the network: the message cannot be made
    content = NotificationContent("t", "T", None, None, {"from": "x"})
    claim = Claim("n1", "mobile_push", 1, "u1", content, 0, [], {})
    target = PushTarget("d1", "tok:1", "production", Platform.ANDROID)
    answer = await provider.send(provider.prepare(claim), target)
    assert answer.outcome is PushOutcome.FAILED
    assert "data key 'from' is reserved by FCM" in answer.reason
