"""Lease renewals: a renewal extends only the leases its owner still holds, and says which,
so that a dispatcher whose lease another took stops sending that work. Both backends."""

import uuid

from owlmetry.store import DeliveryEnd, DeliveryStatus, NotificationContent

CONTENT = NotificationContent("feedback.new", "New feedback")


async def test_a_renewal_extends_and_names_only_the_leases_still_held(store):
    user = await store.create_user(str(uuid.uuid4()), "kim@example.com", 1)
    ids = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id), (str(uuid.uuid4()), user.id)], CONTENT,
        ["mobile_push", "email"], 2)
    keys = [(i, channel) for i in ids for channel in ("mobile_push", "email")]
    assert len(await store.claim_deliveries("first", 10, 1_000, 10)) == 4

    # The first owner's lease ran out (renewals failed); the second takes one delivery, and
    # the first ends another.
    (taken,) = await store.claim_deliveries("second", 2_000, 1_000, 1)
    taken_key = (taken.notification_id, taken.channel)
    ended = next(key for key in keys if key != taken_key)
    await store.save_outcomes("first", [], [DeliveryEnd(*ended, DeliveryStatus.SKIPPED, None)],
                              2_001)

    renewed = await store.renew_leases("first", keys, 5_000)
    assert renewed == set(keys) - {taken_key, ended}
    assert await store.renew_leases("second", keys, 5_000) == {taken_key}
    # Renewed until 5,000: nobody can claim them before.
    assert await store.claim_deliveries("third", 4_999, 1_000, 10) == []
    assert len(await store.claim_deliveries("third", 5_000, 1_000, 10)) == 3
