"""Notification preferences through GET and PATCH /v1/auth/me, as the Owlmetry iOS app reads and
writes them (research file §8, NotificationPreferencesView.swift), on both backends."""

import asyncio

import pytest

from owlmetry.http.context import STORE
from owlmetry.preferences import MAX_TYPES
from tests.http.test_auth import make_key

ME = "/v1/auth/me"


def choice(type: str, channel: str, on) -> dict:
    """The body the app sends when one switch is flipped."""
    return {"preferences": {"notifications": {"types": {type: {channel: on}}}}}


async def get_me(client, headers) -> dict:
    response = await client.get(ME, headers=headers)
    assert response.status == 200
    return (await response.json())["user"]


async def patch_me(client, headers, body) -> dict:
    response = await client.patch(ME, headers=headers, json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["user"]


def app_types(user: dict) -> dict[str, dict[str, bool]]:
    """`user.preferences.notifications.types` decoded as the app does: a [String: [String: Bool]];
    an absent type or channel means the default."""
    types = user["preferences"]["notifications"]["types"]
    assert isinstance(types, dict)
    for name, channels in types.items():
        assert isinstance(name, str) and isinstance(channels, dict)
        assert all(isinstance(c, str) and isinstance(on, bool) for c, on in channels.items())
    return types


async def test_the_apps_calls_one_switch_at_a_time_round_trip(client, users):
    user_id, headers = await users.headers()
    user = await get_me(client, headers)
    assert user["id"] == user_id and app_types(user) == {}

    await patch_me(client, headers, choice("issue.new", "email", True))
    await patch_me(client, headers, choice("issue.new", "mobile_push", False))
    answered = await patch_me(client, headers, choice("feedback.new", "in_app", False))
    expected = {"issue.new": {"email": True, "mobile_push": False},
                "feedback.new": {"in_app": False}}
    assert app_types(answered) == expected
    assert app_types(await get_me(client, headers)) == expected


async def test_the_dashboard_setting_round_trips_beside_the_notification_choices(client, users):
    _, headers = await users.headers()
    await patch_me(client, headers, choice("issue.new", "email", True))
    await patch_me(client, headers, {"preferences": {"ui": {"dashboard": {
        "magnitudeWindowHours": 24}}}})
    # Another dashboard member later: merged with the first, as upstream merges `ui.dashboard`.
    await patch_me(client, headers, {"preferences": {"ui": {"dashboard": {"pinned": ["a"]}}}})
    preferences = (await get_me(client, headers))["preferences"]
    assert preferences == {
        "notifications": {"types": {"issue.new": {"email": True}}},
        "ui": {"dashboard": {"magnitudeWindowHours": 24, "pinned": ["a"]}},
    }


async def test_null_puts_a_channel_back_to_its_default(client, users):
    _, headers = await users.headers()
    await patch_me(client, headers, {"preferences": {"notifications": {"types": {
        "issue.new": {"email": True, "in_app": False}}}}})
    assert app_types(await patch_me(client, headers, choice("issue.new", "email", None))) == {
        "issue.new": {"in_app": False}}
    # The type's last choice gone: the type is gone too.
    assert app_types(await patch_me(client, headers, choice("issue.new", "in_app", None))) == {}


async def test_concurrent_patches_of_different_channels_all_survive(client, users):
    _, headers = await users.headers()
    switches = [(f"type.{n}", channel) for n in range(8)
                for channel in ("in_app", "email", "mobile_push")]
    await asyncio.gather(*(patch_me(client, headers, choice(type, channel, n % 2 == 0))
                           for n, (type, channel) in enumerate(switches)))
    types = app_types(await get_me(client, headers))
    assert {(type, channel) for type, channels in types.items() for channel in channels} == set(
        switches)
    assert all(types[type][channel] == (n % 2 == 0) for n, (type, channel) in enumerate(switches))


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "Request body must be valid JSON"),
    (b'[{"preferences": {}}]', "Request body must be a JSON object"),
    (b"", "At least one field to update is required: preferences"),
    (b'{"name": "Alice"}', "At least one field to update is required: preferences"),
    (b'{"preferences": []}', "preferences must be an object"),
    (b'{"preferences": {"notifications": {"types": {"issue.new": {"sms": true}}}}}',
     "types.issue.new: unknown channel 'sms' (channels are in_app, email, mobile_push)"),
    (b'{"preferences": {"notifications": {"types": {"issue.new": {"email": "yes"}}}}}',
     "types.issue.new.email must be true, false or null (back to the default)"),
    (b'{"preferences": {"notifications": {"types": {"issue.new": {"email": 1}}}}}',
     "types.issue.new.email must be true, false or null (back to the default)"),
    (b'{"preferences": {"ui": {"pad": "' + b"x" * 5000 + b'"}}}',
     "preferences.ui must be an object of at most 4096 bytes"),
])
async def test_bad_bodies_are_400_with_a_clear_message(client, users, body, message):
    _, headers = await users.headers()
    response = await client.patch(ME, headers=headers, data=body)
    assert (response.status, await response.json()) == (400, {"error": message})
    assert app_types(await get_me(client, headers)) == {}


async def test_more_types_than_the_bound_are_refused_in_one_body_or_merged(client, users):
    _, headers = await users.headers()
    too_many = {f"type.{n}": {"email": True} for n in range(MAX_TYPES + 1)}
    response = await client.patch(ME, headers=headers, json={"preferences": {"notifications": {
        "types": too_many}}})
    assert (response.status, await response.json()) == (
        400, {"error": f"at most {MAX_TYPES} notification types"})

    at_the_bound = dict(list(too_many.items())[:MAX_TYPES])
    await patch_me(client, headers, {"preferences": {"notifications": {"types": at_the_bound}}})
    response = await client.patch(ME, headers=headers, json=choice("one.more", "email", True))
    assert (response.status, await response.json()) == (
        400, {"error": f"at most {MAX_TYPES} notification types"})
    assert app_types(await get_me(client, headers)) == at_the_bound  # left as it was


async def test_api_keys_are_403_and_a_deleted_user_401(client, users):
    for kind in ("server", "agent"):
        response = await client.patch(ME, json=choice("issue.new", "email", True), headers={
            "Authorization": f"Bearer {await make_key(client.app, kind)}"})
        assert response.status == 403
        assert await response.json() == {
            "error": "This route requires a user session; API keys are not accepted"}
    user_id, headers = await users.headers()
    await client.app[STORE].execute("DELETE FROM users WHERE id = $1", user_id)
    response = await client.patch(ME, headers=headers, json=choice("issue.new", "email", True))
    assert (response.status, await response.json()) == (401, {"error": "User no longer exists"})
