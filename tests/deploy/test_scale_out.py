"""Scaling out: two `owlmetry serve` processes on one PostgreSQL database behind one nginx
upstream (two `server` lines) behave as one server does.

nginx (one worker, round-robin) alternates requests between the two, so consecutive requests
land on different servers; each server's access log shows which requests it answered.
"""

import asyncio
import uuid
from collections import Counter

from owlmetry.clock import now_ms
from owlmetry.credentials import UserTokens, signing_secret
from tests.deploy.conftest import access_lines, only_postgresql, session_from
from tests.notify.conftest import token, wait_done
from tests.notify.test_durability import SAFETY_S, owners, requests_by_token, server_key

TRUSTING = {"TRUSTED_PROXIES": "127.0.0.1", "ACCESS_LOG": "true"}
CLIENT = "127.0.0.2"
DEVICES = 12


async def answered(server, method: str, route: str, count: int) -> list[dict]:
    """The server's access log lines for `method route`, once there are at least `count`."""
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while True:
        found = [line for line in access_lines(server)
                 if (line["method"], line["route"]) == (method, route)]
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, server.log()[-3000:]
        await asyncio.sleep(0.02)


async def both_answered(pair, method: str, route: str, count: int) -> list[int]:
    """How many `method route` requests each server logged, once they add up to `count`."""
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while True:
        split = [len(await answered(server, method, route, 0)) for server in pair]
        if sum(split) >= count:
            return split
        assert asyncio.get_running_loop().time() < deadline, split
        await asyncio.sleep(0.02)


@only_postgresql
async def test_two_servers_behind_nginx_register_list_and_fan_out_as_one(
        store, config, mocks, servers, nginx, client_tls):
    one, two = await asyncio.gather(servers("one", **TRUSTING), servers("two", **TRUSTING))
    proxy = await nginx([one.port, two.port])
    # Both servers sign with the secret of one key file (JWT_SECRET would do as well).
    tokens = UserTokens(signing_secret(config))
    alice, bob = [await store.create_user(str(uuid.uuid4()), f"{name}@example.com", now_ms())
                  for name in ("alice", "bob")]
    as_alice = {"Cookie": f"token={tokens.issue(alice.id, alice.email)}"}
    as_bob = {"Cookie": f"token={tokens.issue(bob.id, bob.email)}"}
    device_tokens = [token(i) for i in range(DEVICES)]

    async with session_from(CLIENT, client_tls) as client:
        async def register(headers, device_token: str, i: int) -> dict:
            environment = ("production", "sandbox")[i % 2]
            async with client.post(f"{proxy.https}/v1/devices", headers=headers, json={
                    "channel": "ios_push", "token": device_token, "environment": environment,
                    "app_version": f"1.{i}"}) as answer:
                assert answer.status == 201, await answer.text()
                return (await answer.json())["device"]

        async def listed(headers) -> list[dict]:
            async with client.get(f"{proxy.https}/v1/devices", headers=headers) as answer:
                assert answer.status == 200
                return (await answer.json())["devices"]

        registered = [await register(as_alice, t, i) for i, t in enumerate(device_tokens)]
        # Whichever server answers, every registration is listed.
        lists = [await listed(as_alice) for _ in range(4)]
        assert all({d["id"] for d in devices} == {d["id"] for d in registered} for devices in lists)
        # Both servers took registrations and lists, and each registration was logged once.
        for server in (one, two):
            assert await answered(server, "POST", "/v1/devices", 1)
            assert await answered(server, "GET", "/v1/devices", 1)
        split = await both_answered((one, two), "POST", "/v1/devices", DEVICES)
        assert sum(split) == DEVICES

        # Registering a token again, on either server, moves it: never a second row.
        moved = await register(as_bob, device_tokens[0], 0)
        again = [await register(as_alice, device_tokens[1], 1) for _ in range(2)]
        assert moved["id"] == registered[0]["id"]
        assert {d["id"] for d in again} == {registered[1]["id"]}
        assert [d["id"] for d in await listed(as_bob)] == [registered[0]["id"]]
        alice_now = await listed(as_alice)
        assert len(alice_now) == DEVICES - 1 and registered[0]["id"] not in {d["id"] for d in alice_now}
        assert (await store.execute("SELECT count(*) FROM user_devices"))[0][0] == DEVICES

        # A fan-out per user, posted through nginx (one to each server), reaches every device
        # exactly once between the two servers.
        key = await server_key(store)
        ids = []
        for user in (alice, bob):
            async with client.post(f"{proxy.https}/v1/notifications",
                                   headers={"Authorization": f"Bearer {key}"},
                                   json={"user_ids": [user.id], "type": "t", "title": "Hi"}) \
                    as answer:
                assert answer.status == 202, await answer.text()
                ids += (await answer.json())["notification_ids"]

    progress = await wait_done(store, ids, timeout=SAFETY_S)
    assert progress.deliveries == {"sent": 2}
    assert progress.pushes == {"delivered": DEVICES}
    assert requests_by_token(mocks.production, mocks.sandbox) == Counter(
        {device_token: 1 for device_token in device_tokens})
    for server in (one, two):
        assert len(await answered(server, "POST", "/v1/notifications", 1)) == 1
    print(f"\n[scale-out] registrations per server {split}, "
          f"deliveries by owner {sorted((await owners(store)).values())}")
