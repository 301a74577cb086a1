"""The mock records what it received, per stream, when a test asks it to; and it holds a
background push to Apple's priority rule."""

import uuid

from .conftest import PAYLOAD, token


async def test_the_mock_records_each_streams_headers_and_payload_once_asked(mock, make_client):
    client = make_client()
    assert (await client.send(token(1), PAYLOAD)).ok
    assert mock.received is None  # not recording: nothing kept
    received = mock.record()
    sent = await client.send(token(2), PAYLOAD, priority=5, expiration=1_900_000_000,
                             collapse_id="c-1")
    assert sent.ok
    other = await client.send(token(3), {"aps": {"content-available": 1}},
                              push_type="background", priority=5, expiration=0)
    assert other.ok

    assert [r.token for r in received] == [token(2), token(3)]
    first, second = received
    assert first.status == 200 and first.payload == PAYLOAD
    assert {name: value for name, value in first.headers.items() if name.startswith("apns-")} \
        == {"apns-topic": "com.example.app", "apns-push-type": "alert", "apns-priority": "5",
            "apns-expiration": "1900000000", "apns-collapse-id": "c-1", "apns-id": sent.apns_id}
    # Each push names itself with a UUID of its own, the one its result reports.
    assert uuid.UUID(sent.apns_id) and second.headers["apns-id"] == other.apns_id != sent.apns_id
    assert first.headers[":path"] == f"/3/device/{token(2)}"
    assert "authorization" not in first.headers  # the provider token is not kept
    assert second.payload == {"aps": {"content-available": 1}}
    assert (second.headers["apns-push-type"], second.headers["apns-priority"],
            second.headers["apns-expiration"]) == ("background", "5", "0")
    assert "apns-collapse-id" not in second.headers


async def test_a_background_push_at_priority_10_is_refused_as_apple_does(mock, make_client):
    received = mock.record()
    result = await make_client().send(token(4), {"aps": {"content-available": 1}},
                                      push_type="background", priority=10)
    assert (result.status, result.reason) == (400, "BadPriority")
    assert [(r.token, r.status) for r in received] == [(token(4), 400)]
