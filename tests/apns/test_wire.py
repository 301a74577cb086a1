"""HPACK both ways: our literal encoding against hpack's decoder, our zero-table decoder against
hpack's encoder (Huffman or not, static references, size updates)."""

import os
import uuid

import hpack
import pytest
from hpack import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from owlmetry.apns import wire
from owlmetry.apns.hpack_decoder import ZeroTableDecoder, decode_huffman


def test_literals_decode_with_a_standard_hpack_decoder():
    long_token = "ab" * 100  # a :path over 127 bytes needs a multi-byte length
    block = (wire.TABLE_SIZE_ZERO + wire.REQUEST_PREFIX + wire.path_field(long_token)
             + wire.authority_field("api.push.apple.com", 443)
             + wire.authorization_field(b"bearer " + b"x" * 300)
             + wire.options_field("com.example.app", "voip", 5, 1_700_000_000, "c" * 64))
    decoded = hpack.Decoder().decode(block, raw=True)
    assert decoded == [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/3/device/" + long_token.encode()),
        (b":authority", b"api.push.apple.com"), (b"authorization", b"bearer " + b"x" * 300),
        (b"apns-topic", b"com.example.app"), (b"apns-push-type", b"voip"),
        (b"apns-priority", b"5"), (b"apns-expiration", b"1700000000"),
        (b"apns-collapse-id", b"c" * 64)]


def test_huffman_round_trips_every_byte_value():
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    samples = [bytes(range(256)), b"", b"apns-id", str(uuid.uuid4()).encode()]
    samples += [os.urandom(n) for n in range(1, 64)]
    for raw in samples:
        assert decode_huffman(encoder.encode(raw)) == raw


def test_bad_huffman_padding_is_refused():
    with pytest.raises(HPACKDecodingError):
        decode_huffman(b"\x00")  # ends on five 0-bits, not an EOS prefix


def test_zero_table_decoder_reads_what_a_zero_table_encoder_writes():
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what our SETTINGS_HEADER_TABLE_SIZE 0 obliges a peer to do
    decoder = ZeroTableDecoder()
    for i in range(300):
        headers = [(b":status", b"200" if i % 3 else b"410"),
                   (b"apns-id", str(uuid.uuid4()).encode()),
                   (b"content-type", b"application/json"),
                   (b"x-long", b"v" * (i % 200))]
        assert decoder.decode(encoder.encode(headers)) == headers


def test_zero_table_decoder_refuses_dynamic_references():
    with pytest.raises(HPACKDecodingError):
        ZeroTableDecoder().decode(b"\xbe")  # index 62: the first dynamic entry
    with pytest.raises(HPACKDecodingError):
        ZeroTableDecoder().decode(b"\x3f\xe1\x1f")  # table size update to 4096


def test_device_token_rule():
    assert wire.is_device_token("ab" * 8) and wire.is_device_token("AB" * 100)
    assert wire.is_device_token("0123456789abcdefABCDEF0123456789")
    for wrong in ("ab" * 7, "ab" * 101, "a" * 17, "xy" * 16, "ab" * 16 + "\n", "", None,
                  b"ab" * 16, "ab" * 16 + " "):
        assert not wire.is_device_token(wrong), wrong


def test_payload_limit_is_larger_for_voip_only():
    assert wire.payload_limit("voip") == 5120
    assert {wire.payload_limit(kind) for kind in ("alert", "background", "liveactivity")} == {4096}
