"""The dispatcher honours notification preferences, on both backends: each channel switched off
per type, the operator's defaults (NOTIFICATION_DEFAULTS), and a batch of recipients whose
preferences differ."""

import uuid

from owlmetry.config import from_env
from owlmetry.http.app import create_app
from owlmetry.http.context import DISPATCHER
from owlmetry.notify.dispatcher import enqueue
from owlmetry.preferences import Defaults, merge, parse_defaults, parse_patch
from owlmetry.store import NotificationContent
from tests.http.test_auth import make_key
from tests.notify.conftest import CONTENT, user_with_devices, wait_done
from tests.provider_mocks import unconfigured_push

ISSUE = NotificationContent("issue.new", "New issue", "Crash in checkout")  # email off by default
# The channels a dispatcher has once the email channel exists; only names matter to the enqueue.
WITH_EMAIL = ["email", "mobile_push"]


async def choose(store, user_id: str, types: dict) -> None:
    """What PATCH /v1/auth/me stores for `{"preferences": {"notifications": {"types": types}}}`."""
    patch = parse_patch({"notifications": {"types": types}})
    assert await store.update_preferences(user_id, lambda stored: merge(stored, patch))


async def deliveries(store, notification_ids: list[str]) -> dict[str, set[str]]:
    """The channels each notification has a delivery on."""
    found = {notification_id: set() for notification_id in notification_ids}
    for notification_id, channel in await store.execute_batch(
            "WITH batch (id) AS ({batch}) SELECT d.notification_id, d.channel "
            "FROM batch AS b JOIN notification_deliveries AS d ON d.notification_id = b.id",
            ("text",), [(i,) for i in notification_ids]):
        found[notification_id].add(channel)
    return found


async def test_inbox_off_the_row_is_never_listed_or_counted_but_the_push_goes(
        store, mocks, mobile_push, dispatchers):
    user_id, (device_token,) = await user_with_devices(store, ["production"], 0)
    await choose(store, user_id, {"feedback.new": {"in_app": False}})
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([user_id], CONTENT)
    assert (await wait_done(store, ids)).pushes == {"delivered": 1}

    assert await store.list_notifications(user_id, "all", None, None, 10) == []
    assert await store.unread_count(user_id) == 0
    # Born deleted: the row holds what the push sent, and retention removes it in time.
    assert await store.execute("SELECT deleted_at = created_at FROM notifications WHERE id = $1",
                               ids[0]) == [(True,)]
    payload = mocks.production.stats.payloads[device_token]
    assert payload["aps"]["badge"] == 0 and payload["aps"]["alert"]["title"] == "New feedback"

    # Another type keeps the inbox: listed, counted and badged.
    later = await dispatcher.enqueue([user_id], ISSUE)
    await wait_done(store, later)
    assert [n.id for n in await store.list_notifications(user_id, "all", None, None, 10)] == later
    assert await store.unread_count(user_id) == 1
    assert mocks.production.stats.payloads[device_token]["aps"]["badge"] == 1


async def test_mobile_push_off_no_push_delivery(store, mocks, mobile_push, dispatchers):
    user_id, (device_token,) = await user_with_devices(store, ["production"], 0)
    await choose(store, user_id, {"feedback.new": {"mobile_push": False}})
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue([user_id], CONTENT)

    assert await deliveries(store, ids) == {ids[0]: set()}
    assert (await wait_done(store, ids)).deliveries == {}
    assert mocks.production.stats.requests[device_token] == 0
    assert await store.unread_count(user_id) == 1  # the inbox is still on


async def test_email_on_or_off_per_type_makes_a_delivery_or_none(store):
    # issue.new: email off by default; feedback.new: on by default (upstream's).
    default, opted_in = [(await user_with_devices(store, [], n))[0] for n in range(2)]
    await choose(store, opted_in, {"issue.new": {"email": True}, "feedback.new": {"email": False}})

    issue = await enqueue(store, [default, opted_in], ISSUE, WITH_EMAIL, Defaults())
    feedback = await enqueue(store, [default, opted_in], CONTENT, WITH_EMAIL, Defaults())

    assert await deliveries(store, issue) == {issue[0]: {"mobile_push"},
                                              issue[1]: {"mobile_push", "email"}}
    assert await deliveries(store, feedback) == {feedback[0]: {"mobile_push", "email"},
                                                 feedback[1]: {"mobile_push"}}


async def test_only_channels_the_dispatcher_has_get_deliveries(store):
    user_id, _ = await user_with_devices(store, [], 0)
    ids = await enqueue(store, [user_id], CONTENT, ["mobile_push"], Defaults())  # no email channel
    assert await deliveries(store, ids) == {ids[0]: {"mobile_push"}}


async def test_a_batch_of_recipients_with_different_preferences(store):
    users = [(await user_with_devices(store, [], n))[0] for n in range(6)]
    quiet, no_inbox, mail_only, same_as_quiet = users[1], users[2], users[3], users[4]
    await choose(store, quiet, {"feedback.new": {"mobile_push": False, "email": False}})
    await choose(store, same_as_quiet, {"feedback.new": {"mobile_push": False, "email": False}})
    await choose(store, no_inbox, {"feedback.new": {"in_app": False}, "issue.new": {"email": True}})
    await choose(store, mail_only, {"feedback.new": {"in_app": False, "mobile_push": False}})
    missing = str(uuid.uuid4())

    ids = await enqueue(store, [users[0], missing, *users[1:], users[0]], CONTENT, WITH_EMAIL,
                        Defaults())

    assert len(ids) == 6  # in the order given; the missing user and the repeat skipped
    by_user = dict(await store.execute_batch(
        "WITH batch (id) AS ({batch}) SELECT n.user_id, n.id FROM batch AS b "
        "JOIN notifications AS n ON n.id = b.id", ("text",), [(i,) for i in ids]))
    assert [by_user[u] for u in users] == ids
    assert await deliveries(store, ids) == {
        by_user[users[0]]: {"mobile_push", "email"}, by_user[quiet]: set(),
        by_user[no_inbox]: {"mobile_push", "email"}, by_user[mail_only]: {"email"},
        by_user[same_as_quiet]: set(), by_user[users[5]]: {"mobile_push", "email"}}
    for user_id in users:
        expected = 0 if user_id in (no_inbox, mail_only) else 1
        assert await store.unread_count(user_id) == expected, user_id


async def test_operator_defaults_change_what_a_user_without_preferences_gets(store):
    plain, chooser = [(await user_with_devices(store, [], n))[0] for n in range(2)]
    await choose(store, chooser, {"feedback.new": {"email": True}, "custom.type": {
        "mobile_push": True}})
    defaults = parse_defaults('{"feedback.new": {"email": false}, "*": {"mobile_push": false}}')
    custom = NotificationContent("custom.type", "Something else")

    feedback = await enqueue(store, [plain, chooser], CONTENT, WITH_EMAIL, defaults)
    other = await enqueue(store, [plain, chooser], custom, WITH_EMAIL, defaults)

    # The user's own choice still wins over the operator's default.
    assert await deliveries(store, feedback) == {feedback[0]: {"mobile_push"},
                                                 feedback[1]: {"mobile_push", "email"}}
    assert await deliveries(store, other) == {other[0]: set(), other[1]: {"mobile_push"}}


async def test_notification_defaults_from_the_environment_reach_the_producer_route(
        database_url, tmp_path, aiohttp_client):
    config = from_env({"DATABASE_URL": database_url, "SECRET_KEY_FILE": f"{tmp_path}/jwt.key",
                       "NOTIFICATION_DEFAULTS": '{"feedback.new": {"mobile_push": false}}'})
    client = await aiohttp_client(create_app(config, channels={
        "mobile_push": unconfigured_push()}))
    dispatcher = client.app[DISPATCHER]
    assert dispatcher.defaults == config.notification_defaults
    user_id, _ = await user_with_devices(dispatcher.store, ["production"], 0)
    server_key = await make_key(client.app, "server")

    response = await client.post("/v1/notifications", json={
        "user_ids": [user_id], "type": "feedback.new", "title": "New feedback"},
        headers={"Authorization": f"Bearer {server_key}"})
    (notification_id,) = (await response.json())["notification_ids"]

    assert await deliveries(dispatcher.store, [notification_id]) == {notification_id: set()}
    # The notification is in the inbox all the same.
    assert await dispatcher.store.unread_count(user_id) == 1
