"""The dispatcher's counts behind owlmetry_pushes_total and owlmetry_deliveries_total: what its
writer stored, by channel and outcome, against real mock APNs hosts on both backends."""

from owlmetry.apns.mock import TokenFault
from owlmetry.clock import now_ms
from tests.notify.conftest import CONTENT, user_with_devices, wait_done
from tests.provider_mocks import unconfigured_push


async def test_answers_are_counted_as_stored(store, mocks, mobile_push, dispatchers):
    before = now_ms()
    user_id, tokens = await user_with_devices(store, ["production"] * 3 + ["sandbox"], 0)
    gone, reregistered, _, bad = tokens
    mocks.production.behaviour.unregistered[gone] = now_ms() + 1000
    # Apple gave up on it before it was registered again: stored as failed, and counted so.
    mocks.production.behaviour.unregistered[reregistered] = before - 60_000
    mocks.sandbox.behaviour.bad_tokens.add(bad)
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    await dispatcher.recorder.flush()

    assert progress.pushes == {"removed": 2, "failed": 1, "delivered": 1}
    assert dispatcher.recorder.recorded == {("mobile_push", "removed"): 2,
                                          ("mobile_push", "failed"): 1,
                                          ("mobile_push", "delivered"): 1}
    assert dispatcher.recorder.ended == {("mobile_push", "sent"): 1}
    assert dispatcher.in_flight == 0 and dispatcher.held == 0


async def test_a_requeue_counts_as_an_end_and_its_devices_once(store, mocks, mobile_push, dispatchers):
    user_id, (stubborn,) = await user_with_devices(store, ["production"], 0)
    mocks.production.behaviour.token_faults[stubborn] = TokenFault(503, "ServiceUnavailable", 99)
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_attempts=2)

    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    await dispatcher.recorder.flush()

    assert progress.deliveries == {"failed": 1}
    assert dispatcher.recorder.recorded == {("mobile_push", "failed"): 1}
    assert dispatcher.recorder.ended == {("mobile_push", "pending"): 1, ("mobile_push", "failed"): 1}


async def test_without_credentials_pushes_count_as_skipped(store, dispatchers):
    user_id, _ = await user_with_devices(store, ["production", "sandbox"], 0)
    dispatcher = dispatchers({"mobile_push": unconfigured_push()})

    await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    await dispatcher.recorder.flush()

    assert dispatcher.recorder.recorded == {("mobile_push", "skipped"): 2}
    assert dispatcher.recorder.ended == {("mobile_push", "skipped"): 1}
