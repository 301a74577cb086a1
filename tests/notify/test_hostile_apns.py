"""The fan-out against a hostile APNs, through the real server app on both backends: 10% dead
tokens, 429 and 503 at 5% of requests each, GOAWAY and TCP resets on the connections, the
stream limit dropped from 1,000 to 1 and raised again mid-run, and devices registering their
dead tokens again while their pushes fail. What a user checks afterwards: no valid device
removed, every dead token removed on its first answer, every push delivered or failed with a
reason, nothing lost, and a push accepted twice only where its stream was on a reset
connection."""

import asyncio
import logging
import uuid
from collections import Counter

from owlmetry.apns import APNsClient, RetryPolicy
from owlmetry.apns.mock import TokenFault
from owlmetry.clock import now_ms
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from owlmetry.notify.channels.mobile_push import MobilePush
from owlmetry.notify.providers.apns import APNs
from owlmetry.notify.providers.fcm import FCM, NOT_CONFIGURED
from owlmetry.store import DeviceRegistration, Platform, PushOutcome
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC
from tests.http.test_auth import make_key
from tests.notify.conftest import CONTENT, server_log, token, wait_done

USERS = 750
DEVICES_PER_USER = 4  # 3,000 devices
REREGISTERED = 25  # dead tokens whose apps register them again while their pushes fail
# A few retries more than Apple's rules need, with the waits cut to milliseconds: a push
# lost in a reset may be lost again in the next one.
RETRY = RetryPolicy(max_retries=8, base_delay_s=0.001, max_delay_s=0.01,
                    too_many_requests_delay_s=0.002)
NOTIFICATION = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote"}


def apns_channel(mocks, tls_files, auth_key) -> MobilePush:
    client = APNsClient(KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0], retry=RETRY,
                        timeout_s=20, connections=4,
                        production_url=f"https://127.0.0.1:{mocks.production.port}",
                        sandbox_url=f"https://127.0.0.1:{mocks.sandbox.port}")
    return MobilePush({Platform.IOS: APNs(client), Platform.ANDROID: FCM(None, NOT_CONFIGURED)})


async def register(store, user_id: str, device_token: str):
    return await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
        "ios_push", device_token, "production", None, None, None), now_ms())


async def pushes(store) -> dict[str, tuple]:
    """device id -> (outcome, status, reason) of every push recorded."""
    rows = await store.execute(
        "SELECT device_id, outcome, status, reason FROM notification_pushes")
    assert len({device_id for device_id, *_ in rows}) == len(rows), "two answers for a device"
    return {device_id: (PushOutcome(outcome), status, reason)
            for device_id, outcome, status, reason in rows}


async def existing_devices(store) -> set[str]:
    return {device_id for (device_id,) in await store.execute("SELECT id FROM user_devices")}


async def register_again_when_held(client, mock, jwts: dict[str, str], done: asyncio.Event,
                                   registered: list):
    """The apps of dead tokens register them again while their pushes are under way: each
    time the mock holds such a push (after two 503s), its app registers, then the mock
    answers (410 Unregistered, dated now: after the registration)."""
    while not done.is_set():
        for device_token in mock.held():
            response = await client.post(
                "/v1/devices", json={"channel": "ios_push", "token": device_token,
                                     "environment": "production"},
                headers={"Authorization": f"Bearer {jwts[device_token]}"})
            assert response.status == 201
            registered.append(device_token)
            mock.release(device_token)
        await asyncio.sleep(0.005)


async def stream_limit_one_then_back(mock):
    """SETTINGS_MAX_CONCURRENT_STREAMS 1,000 -> 1 -> 1,000 mid-run, from the test."""
    await mock.requests_seen(800)
    mock.set_max_streams(1)
    await mock.requests_seen(1100)
    mock.set_max_streams(1000)


async def test_fan_out_against_a_hostile_apns(config, aiohttp_client, mocks, tls_files,
                                              auth_key, caplog):
    caplog.set_level(logging.DEBUG)
    mock = mocks.production
    b = mock.behaviour
    b.seed = 15
    b.dead_share = 0.10
    b.error_probability = {429: 0.05, 503: 0.05}
    b.goaway_after = 700  # per connection
    b.drop_after, b.drop_rst, b.max_drops = 400, True, 3  # the first 3 connections: TCP RST
    b.latency_s = 0.001  # many streams in flight when a connection dies

    client = await aiohttp_client(create_app(config, channels={
        "mobile_push": apns_channel(mocks, tls_files, auth_key)}))
    store = client.app[STORE]
    user_ids = []
    for _ in range(USERS):
        user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                       now_ms())
        user_ids.append(user.id)
    owner = {token(i): user_ids[i // DEVICES_PER_USER]
             for i in range(USERS * DEVICES_PER_USER)}
    devices = await asyncio.gather(*(register(store, user_id, device_token)
                                     for device_token, user_id in owner.items()))
    device_of = {t: device.id for t, device in zip(owner, devices)}
    dead = {t for t in owner if b.is_dead(t)}
    assert 0.08 < len(dead) / len(owner) < 0.12
    again = sorted(dead)[:REREGISTERED]
    for device_token in again:
        b.token_faults[device_token] = TokenFault(503, "ServiceUnavailable", times=2)
        b.hold_tokens[device_token] = 2
    jwts = {t: client.app[TOKENS].issue(owner[t], "x@example.com") for t in again}

    done, registered = asyncio.Event(), []
    helpers = [asyncio.create_task(register_again_when_held(client, mock, jwts, done,
                                                            registered)),
               asyncio.create_task(stream_limit_one_then_back(mock))]
    secret = await make_key(client.app, "server")
    response = await client.post("/v1/notifications", json={**NOTIFICATION,
                                                            "user_ids": user_ids},
                                 headers={"Authorization": f"Bearer {secret}"})
    assert response.status == 202, await response.text()
    ids = (await response.json())["notification_ids"]
    try:
        progress = await wait_done(store, ids, timeout=90)
    finally:
        done.set()
        await asyncio.gather(*helpers)

    # Every delivery ended; every device has exactly one final answer: nothing lost.
    assert progress.done
    answers = await pushes(store)
    assert set(answers) == set(device_of.values())
    remaining = await existing_devices(store)
    stats = mock.stats

    # No valid device removed; every live token's push delivered (none had to give up here:
    # each may fail 9 times in a send and be sent 6 times) or failed with a reason.
    for device_token in set(owner) - dead:
        device_id = device_of[device_token]
        assert device_id in remaining
        outcome, status, reason = answers[device_id]
        assert outcome is PushOutcome.DELIVERED or (outcome is PushOutcome.FAILED and reason)
        assert outcome is PushOutcome.DELIVERED, (status, reason)
        assert stats.delivered[device_token] >= 1

    # The dead tokens registered again while their pushes failed are kept, and say why.
    assert sorted(registered) == again
    for device_token in again:
        assert device_of[device_token] in remaining
        assert answers[device_of[device_token]] == (
            PushOutcome.FAILED, 410, "Unregistered (registered again since; kept)")
        assert stats.requests[device_token] >= 3  # 503, 503, then the 410

    # Every other dead token is removed on its first answer: never sent to again, unless
    # that answer may have died with a reset connection.
    reset = Counter(stats.reset_judged)
    for device_token in dead - set(again):
        assert device_of[device_token] not in remaining
        assert answers[device_of[device_token]] == (PushOutcome.REMOVED, 410, "Unregistered")
        assert stats.requests[device_token] - 1 <= reset[device_token]
        assert stats.delivered[device_token] == 0

    # Accepted twice only where the stream was on a reset connection; and sent again each
    # time its answer was never written.
    twice = Counter({t: n - 1 for t, n in stats.delivered.items() if n > 1})
    assert Counter(stats.lost_answers) <= twice <= reset

    # The faults did happen, and no request broke the stream limits.
    assert stats.responses_by_status[429] > 0 and stats.responses_by_status[503] > 0
    assert stats.goaways_sent >= 1 and stats.drops == 3
    assert stats.max_streams_changes == 2 and stats.protocol_errors == 0

    # Whatever the server logged, at any level, names no device token whole.
    logged = server_log(caplog)
    assert not [device_token for device_token in owner if device_token in logged]


async def test_a_bad_token_registered_again_while_its_push_is_out_is_kept(store, mocks,
                                                                          mobile_push,
                                                                          dispatchers):
    # BadDeviceToken carries no timestamp: the moment the send began stands in for it.
    mock = mocks.production
    user_id = (await store.create_user(str(uuid.uuid4()), "bad@example.com", now_ms())).id
    kept, gone = token(1), token(2)
    devices = {t: await register(store, user_id, t) for t in (kept, gone)}
    mock.behaviour.bad_tokens = {kept, gone}
    mock.behaviour.hold_tokens = {kept: 0}  # its first request waits for the test
    dispatcher = dispatchers({"mobile_push": mobile_push(android=False)})
    ids = await dispatcher.enqueue([user_id], CONTENT)
    while not mock.held():
        await asyncio.sleep(0.005)
    await register(store, user_id, kept)  # the app says the token is its own
    mock.release(kept)
    await wait_done(store, ids)
    answers = await pushes(store)
    assert answers[devices[kept].id] == (
        PushOutcome.FAILED, 400, "BadDeviceToken (registered again since; kept)")
    assert answers[devices[gone].id] == (PushOutcome.REMOVED, 400, "BadDeviceToken")
    assert await existing_devices(store) == {devices[kept].id}


async def test_an_apns_outage_goes_back_to_the_queue_and_is_delivered_after_it(
        store, mocks, tls_files, auth_key, dispatchers):
    # Every request answered 503: the pool retries only until its budget (20) is half spent,
    # then each push goes back to the dispatcher's queue after its one try; once APNs answers
    # again every device gets the push once, and none is removed.
    mock = mocks.production
    mock.behaviour.error_probability = {503: 1.0}
    client = APNsClient(KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0], timeout_s=10,
                        retry=RetryPolicy(max_retries=5, base_delay_s=0.001, max_delay_s=0.002,
                                          too_many_requests_delay_s=0.001, budget=20),
                        production_url=f"https://127.0.0.1:{mock.port}",
                        sandbox_url=f"https://127.0.0.1:{mocks.sandbox.port}")
    channel = MobilePush({Platform.IOS: APNs(client),
                          Platform.ANDROID: FCM(None, NOT_CONFIGURED)})
    user_ids, tokens = [], []
    for u in range(50):
        user = await store.create_user(str(uuid.uuid4()), f"outage{u}@example.com", now_ms())
        user_ids.append(user.id)
        for k in range(2):
            tokens.append(token(u * 2 + k))
            await register(store, user.id, tokens[-1])
    dispatcher = dispatchers({"mobile_push": channel}, max_attempts=20)
    ids = await dispatcher.enqueue(user_ids, CONTENT)
    await mock.requests_seen(len(tokens))  # a first try of every push, all refused
    mock.behaviour.error_probability = {}
    progress = await wait_done(store, ids, timeout=30)

    answers = await pushes(store)
    assert progress.done and len(answers) == len(tokens)
    assert {outcome for outcome, _, _ in answers.values()} == {PushOutcome.DELIVERED}
    assert dict(mock.stats.delivered) == {t: 1 for t in tokens}
    assert len(await existing_devices(store)) == len(tokens)
    # Sent again in the pool at most 10 times in all; every other request was a new attempt
    # from the queue (each delivery's attempt sends to its devices still waiting, once).
    attempts = await store.execute("SELECT attempts FROM notification_deliveries")
    assert sum(mock.stats.requests.values()) <= 2 * sum(n for (n,) in attempts) + 10
    assert max(n for (n,) in attempts) >= 2
