"""HPACK both ways: the core's literal encoding against hpack's decoder, its zero-table decoder
against hpack's encoder (Huffman or not, static references, size updates)."""

import os
import uuid

import hpack
import pytest
from hpack import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from owlmetry.h2client import hpack_encoder
from owlmetry.h2client.hpack_decoder import ZeroTableDecoder, decode_huffman


def test_literals_decode_with_a_standard_hpack_decoder():
    long_path = b"/v1/projects/" + b"p" * 120 + b"/messages:send"  # a multi-byte length
    block = (hpack_encoder.TABLE_SIZE_ZERO + hpack_encoder.POST
             + hpack_encoder.path_field(long_path) + hpack_encoder.authority_field("fcm.example", 8443)
             + hpack_encoder.authorization_field(b"Bearer " + b"x" * 300)
             + hpack_encoder.literal(b"content-type", b"application/json")
             + hpack_encoder.GET + hpack_encoder.path_field(b"/short"))
    assert hpack.Decoder().decode(block, raw=True) == [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", long_path),
        (b":authority", b"fcm.example:8443"), (b"authorization", b"Bearer " + b"x" * 300),
        (b"content-type", b"application/json"),
        (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/short")]


def test_huffman_round_trips_every_byte_value():
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    samples = [bytes(range(256)), b"", b"apns-id", str(uuid.uuid4()).encode()]
    samples += [os.urandom(n) for n in range(1, 64)]
    for raw in samples:
        assert decode_huffman(encoder.encode(raw)) == raw


def test_bad_huffman_padding_is_refused():
    with pytest.raises(HPACKDecodingError):
        decode_huffman(b"\x00")  # ends on five 0-bits, not an EOS prefix


@pytest.mark.parametrize("unread", [frozenset(), frozenset({b"apns-id"})])
def test_zero_table_decoder_reads_what_a_zero_table_encoder_writes(unread):
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what our SETTINGS_HEADER_TABLE_SIZE 0 obliges a peer to do
    decoder = ZeroTableDecoder(unread)
    for i in range(300):
        headers = [(b":status", b"200" if i % 3 else b"410"),
                   (b"apns-id", str(uuid.uuid4()).encode()),
                   (b"content-type", b"application/json"),
                   (b"x-long", b"v" * (i % 200))]
        # Fields the provider never reads are left out; every other comes as it was sent.
        assert decoder.decode(encoder.encode(headers)) == [
            (name, value) for name, value in headers if name not in unread]


def test_blocks_alike_but_for_an_unread_value_decode_alike_and_others_do_not():
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    decoder = ZeroTableDecoder(frozenset({b"apns-id"}))
    for i in range(50):
        after = [(b"x", b"ab"[i % 2:i % 2 + 1])] if i % 3 else []
        status = b"200" if i % 5 else b"404"
        for apns_id in (b"a" * 36, b"b" * 36, str(uuid.uuid4()).encode()):
            block = encoder.encode([(b":status", status), (b"apns-id", apns_id)] + after,
                                   huffman=False)
            assert decoder.decode(block) == [(b":status", status)] + after
    twice = encoder.encode([(b"apns-id", b"1"), (b"apns-id", b"2"), (b"y", b"1")],
                           huffman=False)
    assert decoder.decode(twice) == [(b"y", b"1")]
    assert decoder.decode(twice.replace(b"y\x011", b"y\x012")) == [(b"y", b"2")]


def test_unread_fields_still_count_against_the_header_list_limit():
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    decoder = ZeroTableDecoder(frozenset({b"apns-id"}))
    decoder.max_header_list_size = 100
    with pytest.raises(HPACKDecodingError):
        decoder.decode(encoder.encode([(b":status", b"200"), (b"apns-id", b"x" * 200)]))
    with pytest.raises(HPACKDecodingError):  # a value's length past the block's end
        decoder.decode(encoder.encode([(b":status", b"200"), (b"apns-id", b"x" * 20)])[:-5])


def test_zero_table_decoder_refuses_dynamic_references():
    with pytest.raises(HPACKDecodingError):
        ZeroTableDecoder().decode(b"\xbe")  # index 62: the first dynamic entry
    with pytest.raises(HPACKDecodingError):
        ZeroTableDecoder().decode(b"\x3f\xe1\x1f")  # table size update to 4096


def test_repeated_blocks_decode_the_same_and_unique_values_stay_distinct():
    decoder = ZeroTableDecoder()
    common = [(b":status", b"200"), (b"content-type", b"application/json; charset=UTF-8")]
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    block = encoder.encode(common, huffman=True)
    for _ in range(600):  # past the memo of whole blocks: it starts again, nothing changes
        assert decoder.decode(block) == common
        unique = str(uuid.uuid4()).encode()
        assert decoder.decode(encoder.encode(common + [(b"apns-id", unique)], huffman=True)) == \
            common + [(b"apns-id", unique)]
        other = encoder.encode([(b":status", b"404"), (b"x", os.urandom(8).hex().encode())])
        assert decoder.decode(other)[0] == (b":status", b"404")
