"""APNs requests as bytes: the header block a connection makes of `wire.request` decodes with a
standard HPACK decoder; Apple's device-token and payload-size rules."""

import uuid

import hpack

from owlmetry.apns import wire
from owlmetry.h2client import hpack_encoder


def test_a_push_request_decodes_with_a_standard_hpack_decoder():
    long_token = "ab" * 100  # a :path over 127 bytes needs a multi-byte length
    request = wire.request(long_token, wire.options_field("com.example.app", "voip", 5,
                                                          1_700_000_000, "c" * 64), b"{}")
    # In the order the connection joins them, :authority and authorization its own.
    block = (hpack_encoder.TABLE_SIZE_ZERO + request.method + request.path
             + hpack_encoder.authority_field("api.push.apple.com", 443)
             + hpack_encoder.authorization_field(b"bearer " + b"x" * 300) + request.fields)
    decoded = hpack.Decoder().decode(block, raw=True)
    assert decoded == [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/3/device/" + long_token.encode()),
        (b":authority", b"api.push.apple.com"), (b"authorization", b"bearer " + b"x" * 300),
        (b"apns-topic", b"com.example.app"), (b"apns-push-type", b"voip"),
        (b"apns-priority", b"5"), (b"apns-expiration", b"1700000000"),
        (b"apns-collapse-id", b"c" * 64), (b"apns-id", request.apns_id)]
    assert request.body == b"{}"


def test_each_push_request_carries_an_apns_id_of_its_own():
    ids = [wire.request("ab" * 32, b"", b"{}").apns_id for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(str(uuid.UUID(apns_id.decode())) == apns_id.decode() for apns_id in ids)


def test_device_token_rule():
    assert wire.is_device_token("ab" * 8) and wire.is_device_token("AB" * 100)
    assert wire.is_device_token("0123456789abcdefABCDEF0123456789")
    for wrong in ("ab" * 7, "ab" * 101, "a" * 17, "xy" * 16, "ab" * 16 + "\n", "", None,
                  b"ab" * 16, "ab" * 16 + " "):
        assert not wire.is_device_token(wrong), wrong


def test_payload_limit_is_larger_for_voip_only():
    assert wire.payload_limit("voip") == 5120
    assert {wire.payload_limit(kind) for kind in ("alert", "background", "liveactivity")} == {4096}
