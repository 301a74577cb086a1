"""The cap on devices per user (MAX_DEVICES_PER_USER): a registration past it evicts the user's
least recently seen devices, on both backends; refreshing one's own device evicts nothing."""

import asyncio
import uuid
from dataclasses import replace

import pytest

from owlmetry.config import ConfigError, from_env
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.store import DeviceRegistration
from tests.conftest import Users
from tests.http.test_devices import body, listed


def token(n: int) -> str:
    return f"{n:032x}"


def registration(n: int) -> DeviceRegistration:
    return DeviceRegistration("ios_push", token(n), "production", None, None, None)


async def new_user(store) -> str:
    return (await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com", 1)).id


async def seen(store, user_id: str, n: int, at: int) -> str:
    """Register (or refresh) device `n` for the user at time `at`; its id."""
    device = await store.register_device(str(uuid.uuid4()), user_id, registration(n), at)
    return device.id


async def ids(store, user_id: str) -> list[str]:
    return [device.id for device in await store.list_devices(user_id)]


async def test_a_new_device_past_the_cap_evicts_the_least_recently_seen(store):
    store.limit_devices(3)
    user_id = await new_user(store)
    first, second, third = [await seen(store, user_id, n, 1000 + n) for n in range(3)]
    await seen(store, user_id, 0, 2000)  # the first, seen again: now the second is the oldest

    fourth = await seen(store, user_id, 3, 3000)

    assert await ids(store, user_id) == [fourth, first, third]
    fifth = await seen(store, user_id, 4, 4000)
    assert await ids(store, user_id) == [fifth, fourth, first]


async def test_a_new_device_is_never_the_one_its_own_registration_evicts(store):
    """Registrations in the same millisecond tie on time: the device just registered stays (it
    was answered 201), whatever its id; its older ties go first."""
    store.limit_devices(2)
    user_id = await new_user(store)
    for n in range(30):
        newest = await seen(store, user_id, n, 1000)
        assert newest in await ids(store, user_id), n
    taken = await seen(store, await new_user(store), 100, 1000)
    await store.register_device(str(uuid.uuid4()), user_id, registration(100), 1000)  # taken over
    assert taken in await ids(store, user_id)


async def test_refreshes_evict_nothing_even_over_a_lowered_cap(store):
    user_id = await new_user(store)
    devices = [await seen(store, user_id, n, 1000 + n) for n in range(4)]
    store.limit_devices(2)

    assert await seen(store, user_id, 0, 2000) == devices[0]  # a refresh keeps its id
    assert len(await ids(store, user_id)) == 4

    newest = await seen(store, user_id, 9, 3000)  # a new device: down to the cap
    assert await ids(store, user_id) == [newest, devices[0]]


async def test_a_token_taken_over_counts_for_its_new_owner(store):
    store.limit_devices(2)
    alice, bob = await new_user(store), await new_user(store)
    bobs = [await seen(store, bob, n, 1000 + n) for n in (10, 11)]
    phone = await seen(store, alice, 20, 1500)

    assert await seen(store, bob, 20, 2000) == phone  # Alice's phone, now Bob's

    assert await ids(store, alice) == []
    assert await ids(store, bob) == [phone, bobs[1]]


async def test_one_batch_of_registrations_keeps_the_cap(store):
    store.limit_devices(3)
    user_id, other = await new_user(store), await new_user(store)
    await seen(store, user_id, 99, 500)
    # Submitted together, they go to the database as one statement (or a few).
    await asyncio.gather(*(seen(store, user_id, n, 1000 + n) for n in range(20)),
                         seen(store, other, 50, 1000))
    newest = await seen(store, user_id, 40, 5000)  # racing batches may leave one over; trimmed

    listed_ids = await ids(store, user_id)
    assert len(listed_ids) == 3 and listed_ids[0] == newest
    assert len(await ids(store, other)) == 1


async def test_the_api_caps_at_max_devices_per_user(config, aiohttp_client):
    client = await aiohttp_client(create_app(replace(config, max_devices_per_user=2)))
    _, headers = await Users(client.app).headers()
    for n in range(5):
        response = await client.post("/v1/devices", headers=headers, json=body(token(n)))
        assert response.status == 201
        newest = (await response.json())["device"]["id"]

    devices = await listed(client, headers)
    # Registrations a millisecond apart may share a time: the order of a tie is not the test's.
    assert len(devices) == 2 and newest in {device["id"] for device in devices}
    assert client.app[STORE].max_devices_per_user == 2


async def test_the_default_cap_is_100(client, users):
    _, headers = await users.headers()
    await asyncio.gather(*(client.post("/v1/devices", headers=headers, json=body(token(n)))
                           for n in range(101)))
    assert (await client.post("/v1/devices", headers=headers, json=body(token(500)))).status == 201
    assert len(await listed(client, headers)) == 100


def test_max_devices_per_user_is_read_and_checked_at_start():
    assert from_env({}).max_devices_per_user == 100
    assert from_env({"MAX_DEVICES_PER_USER": "5"}).max_devices_per_user == 5
    for bad in ("0", "-1", "lots", "100001"):
        with pytest.raises(ConfigError, match="MAX_DEVICES_PER_USER"):
            from_env({"MAX_DEVICES_PER_USER": bad})


async def test_a_storm_of_new_devices_past_the_cap_fails_none_and_settles_at_the_cap(store):
    """Many concurrent registrations for a few users, all past the cap: on PostgreSQL they run
    as concurrent batches that evict each other's users' rows, which must never deadlock (a
    failed registration); the cap holds again after each user's next new device."""
    store.limit_devices(3)
    users = [await new_user(store) for _ in range(4)]
    registrations = [seen(store, users[n % 4], n, 1000 + n) for n in range(2000)]

    results = await asyncio.gather(*registrations, return_exceptions=True)

    assert [r for r in results if isinstance(r, BaseException)] == []
    for n, user_id in enumerate(users):
        await seen(store, user_id, 10_000 + n, 5000)
        assert len(await ids(store, user_id)) == 3


async def test_a_device_held_by_another_transaction_does_not_keep_the_oldest_past_the_cap(store):
    """PostgreSQL: while another transaction holds one of the user's newest devices (a refresh
    under way), a new device still evicts the least recently seen one."""
    if store.engine.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    store.limit_devices(3)
    user_id = await new_user(store)
    oldest, middle, newest = [await seen(store, user_id, n, 1000 + n) for n in range(3)]

    async with store.engine.transaction() as run:
        await run("SELECT id FROM user_devices WHERE id = $1 FOR UPDATE", newest)
        added = await seen(store, user_id, 3, 2000)

    assert await ids(store, user_id) == [added, newest, middle]
