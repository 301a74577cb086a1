"""A notification's push options are stored with its content and come back with every claim,
on both backends; contents from before migration 9 come back as today's push."""

import uuid

from owlmetry import push_options
from owlmetry.store import NotificationContent, open_store
from tests.store.test_migrations import N4, ROWS_0_1, build_release_0_1

RICH = NotificationContent("match.goal", "Goal!", "2-1", None, {"minute": 88}, "team-1",
                           push_options.PushOptions(
                               "alert", 5, 1_900_000_000, "m-7", "match-7", "GOAL", True,
                               "critical", 0.5, None, "none"))
BACKGROUND = NotificationContent("sync", "Sync", options=push_options.parse(
    {"push_type": "background", "ttl_seconds": 0}, 1_800_000_000))


async def test_options_come_back_with_the_claim_as_they_were_given(store):
    user = await store.create_user(str(uuid.uuid4()), "kim@example.com", 1)
    for content in (RICH, BACKGROUND, NotificationContent("t", "Plain")):
        (notification_id,) = await store.enqueue_notifications(
            [(str(uuid.uuid4()), user.id)], content, ["mobile_push"], 2)
        (claim,) = await store.claim_deliveries("owner", 3, 30_000, 10,
                                                only=[notification_id])
        assert claim.content == content
    assert await store.execute(  # today's push stores NULL
        "SELECT count(*), count(push_options) FROM notification_contents") == [(3, 2)]


async def test_contents_from_before_migration_9_are_todays_push(database_url):
    await build_release_0_1(database_url, ROWS_0_1)
    store = await open_store(database_url)
    try:
        await store.migrate()
        assert await store.execute(
            "SELECT count(*) FROM notification_contents WHERE push_options IS NULL") == [(5,)]
        (claim,) = await store.claim_deliveries("owner", 2_000_000_000_000, 30_000, 10)
        assert claim.notification_id == N4  # release 0.1's pending delivery
        assert claim.content.options == push_options.DEFAULT
    finally:
        await store.close()
