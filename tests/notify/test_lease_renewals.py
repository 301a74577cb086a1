"""Lease renewals: a dispatcher renews only the leases close to their end, so a fan-out whose
deliveries end soon after their claim renews none (each renewal was a statement over every
delivery held), and a delivery whose sends outlast a lease is still renewed in time: sent
once, never given up. A real store on both backends, the mock APNs answering slowly."""

import pytest

from owlmetry.notify.dispatcher import enqueue
from owlmetry.preferences import Defaults
from owlmetry.store import PushOutcome
from tests.notify.conftest import CONTENT, user_with_devices, wait_done

LEASE_MS = 3000  # renewals every 0.5 s; a lease is renewed once it is 0.9 s old
USERS = 60


@pytest.fixture
def renewals(store, monkeypatch):
    """The keys of every renewal the dispatchers ask of the store (which still renews them)."""
    calls: list[list[tuple[str, str]]] = []
    renew_leases = store.renew_leases

    async def recorded(owner, keys, until):
        calls.append(list(keys))
        return await renew_leases(owner, keys, until)
    monkeypatch.setattr(store, "renew_leases", recorded)
    return calls


async def test_deliveries_that_end_soon_after_their_claim_are_never_renewed(
        store, mocks, mobile_push, dispatchers, renewals):
    # A delivery or two at a time (one per claim loop), each answered 0.08 s after it is sent:
    # the fan-out lasts at least 2.4 s (five renewal ticks), and no delivery is held for more
    # than a few tenths of a second.
    mocks.production.behaviour.latency_s = 0.08
    users = [await user_with_devices(store, ["production"], i) for i in range(USERS)]
    ids = await enqueue(store, [user_id for user_id, _ in users], CONTENT, ["mobile_push"],
                        Defaults())
    dispatcher = dispatchers({"mobile_push": mobile_push(android=False)}, lease_ms=LEASE_MS,
                             claim_size=1, max_in_flight=1)
    progress = await wait_done(store, ids)

    assert progress.pushes == {PushOutcome.DELIVERED: USERS}
    assert all(mocks.production.stats.delivered[token] == 1 for _, (token,) in users)
    assert dispatcher.fenced == 0
    assert renewals == []


async def test_a_delivery_whose_sends_outlast_a_lease_is_renewed_in_time(
        store, mocks, mobile_push, dispatchers, renewals):
    mocks.production.behaviour.latency_s = 1.5 * LEASE_MS / 1000
    user_id, (token,) = await user_with_devices(store, ["production"], 0)
    (notification_id,) = await enqueue(store, [user_id], CONTENT, ["mobile_push"], Defaults())
    dispatcher = dispatchers({"mobile_push": mobile_push(android=False)}, lease_ms=LEASE_MS)
    progress = await wait_done(store, [notification_id])

    assert progress.pushes == {PushOutcome.DELIVERED: 1}
    assert mocks.production.stats.delivered[token] == 1
    assert dispatcher.fenced == 0
    assert renewals and all(keys == [(notification_id, "mobile_push")] for keys in renewals)
