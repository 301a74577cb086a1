"""The real pool against the real mock over TLS: answers, limits, flow control, fairness."""

import asyncio

from owlmetry.apns import ResultKind
from owlmetry.apns.mock import TokenFault

from .conftest import PAYLOAD, send_many, token


async def test_delivered_carries_apns_id(make_client, mock):
    result = await make_client().send(token(1), PAYLOAD)
    assert result.kind is ResultKind.DELIVERED and result.ok
    assert len(result.apns_id) == 36 and result.attempts == 1
    assert mock.stats.delivered == {token(1): 1}
    assert len(mock.stats.provider_tokens) == 1


async def test_unregistered_carries_the_410_timestamp(make_client, mock, behaviour):
    behaviour.unregistered[token(2)] = 1_700_000_123_456
    result = await make_client().send(token(2), PAYLOAD)
    assert result.kind is ResultKind.UNREGISTERED and result.token_invalid
    assert (result.status, result.reason) == (410, "Unregistered")
    assert result.timestamp_ms == 1_700_000_123_456


async def test_permanent_reasons_are_never_retried(make_client, mock, behaviour):
    behaviour.bad_tokens.add(token(3))
    behaviour.token_faults[token(4)] = TokenFault(400, "DeviceTokenNotForTopic")
    behaviour.token_faults[token(5)] = TokenFault(403, "Forbidden")
    bad, not_for_topic, forbidden = await send_many(make_client(), [token(3), token(4), token(5)])
    assert bad.kind is ResultKind.BAD_DEVICE_TOKEN and bad.reason == "BadDeviceToken"
    assert not_for_topic.kind is ResultKind.BAD_DEVICE_TOKEN
    assert forbidden.kind is ResultKind.ERROR and forbidden.permanent
    assert mock.stats.requests == {token(3): 1, token(4): 1, token(5): 1}


async def test_payload_too_large_is_not_sent(make_client, mock):
    client = make_client()
    alert = await client.send(token(6), b'{"a":"' + b"x" * 4090 + b'"}')
    voip = await client.send(token(7), {"aps": {}, "x": "y" * 5000}, push_type="voip")
    assert alert.kind is ResultKind.PAYLOAD_TOO_LARGE and alert.attempts == 0
    assert voip.ok
    assert mock.stats.requests == {token(7): 1}
    assert mock.stats.topics == {"com.example.app.voip": 1}  # Apple's topic for VoIP pushes


async def test_malformed_input_gives_results_not_exceptions(make_client, mock):
    client = make_client()
    assert (await client.send("not hex", PAYLOAD)).kind is ResultKind.BAD_DEVICE_TOKEN
    assert (await client.send(token(8), {"x": object()})).reason == "BadPayload"
    assert (await client.send(token(8), PAYLOAD, environment="moon")).reason == "UnknownEnvironment"
    assert sum(mock.stats.requests.values()) == 0


async def test_options_reach_apns_and_sandbox_uses_its_own_pool(make_client, mock):
    client = make_client()
    result = await client.send("ab" * 100, PAYLOAD, environment="sandbox", push_type="background",
                               priority=5, expiration=0, collapse_id="c" * 64)
    assert result.ok
    assert client.connections("sandbox") == 1 and client.connections("production") == 0


async def test_stream_limit_starts_at_one_rises_and_drops_back(make_client, mock, behaviour):
    behaviour.initial_max_streams = 1
    behaviour.max_streams = 20
    behaviour.latency_s = 0.02
    client = make_client(connections=1)
    assert (await client.send(token(0), PAYLOAD)).ok
    assert mock.stats.max_streams_open == 1
    results = await send_many(client, [token(i) for i in range(1, 121)])
    assert all(r.ok for r in results)
    assert 1 < mock.stats.max_streams_open <= 20

    mock.set_max_streams(3)
    assert (await client.send(token(200), PAYLOAD)).ok  # answered after the SETTINGS frame
    mock.reset_stats()
    results = await send_many(client, [token(i) for i in range(201, 261)])
    assert all(r.ok for r in results)
    assert mock.stats.max_streams_open == 3
    assert mock.stats.connections_opened == 0 and mock.stats.protocol_errors == 0


async def test_flow_control_with_big_payloads_and_a_small_window(make_client, mock, behaviour):
    behaviour.initial_window_size = 1000  # per stream; 40 x 4 KB also exceed the 64 KB connection window
    payload = {"aps": {"alert": "z" * 4000}}
    client = make_client(connections=1)
    results = await asyncio.gather(*(client.send(token(i), payload) for i in range(40)))
    assert all(r.ok for r in results)
    assert len(mock.stats.delivered) == 40 and mock.stats.protocol_errors == 0


async def test_waiting_callers_are_served_first_come_first_served(make_client, mock, behaviour):
    behaviour.max_streams = 1
    client = make_client(connections=1)
    assert (await client.send(token(0), PAYLOAD)).ok
    order = [token(i) for i in range(1, 31)]
    assert all(r.ok for r in await send_many(client, order))
    assert list(mock.stats.requests)[1:] == order
