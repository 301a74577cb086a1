"""The timestamp text of the contract, and the ids of new rows."""

import random
import uuid

import pytest

from owlmetry import ids as ids_module
from owlmetry.clock import iso_ms, parse_iso_ms
from owlmetry.ids import OrderedIds, new_id, new_ordered_id


def test_timestamps_are_utc_with_milliseconds_and_z():
    assert iso_ms(1705312800000) == "2024-01-15T10:00:00.000Z"
    assert iso_ms(1705312800007) == "2024-01-15T10:00:00.007Z"
    assert iso_ms(1705312801999) == "2024-01-15T10:00:01.999Z"
    assert iso_ms(1705312800000) == "2024-01-15T10:00:00.000Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


def test_parse_is_the_exact_inverse_of_iso_ms():
    assert parse_iso_ms("2024-01-15T10:00:00.000Z") == 1705312800000
    assert parse_iso_ms("2024-01-15T10:00:00.007Z") == 1705312800007
    assert parse_iso_ms("1970-01-01T00:00:00.000Z") == 0
    assert parse_iso_ms("2024-02-29T23:59:59.999Z") == 1709251199999
    moments = [0, 1, 999, 1000, 1705312800000, 253402300799999, -1]
    moments += random.Random(7).sample(range(253402300799999), 2000)
    for ms in moments:
        text = iso_ms(ms)
        assert parse_iso_ms(text) == ms
        assert iso_ms(parse_iso_ms(text)) == text


@pytest.mark.parametrize("text", [
    "",
    "2024-01-15T10:00:00Z",  # no milliseconds
    "2024-01-15T10:00:00.0Z",
    "2024-01-15T10:00:00.0000Z",
    "2024-01-15T10:00:00.000",  # no Z
    "2024-01-15T10:00:00.000z",
    "2024-01-15T10:00:00.000+00:00",
    "2024-01-15 10:00:00.000Z",
    "2024-01-15t10:00:00.000Z",
    " 2024-01-15T10:00:00.000Z",
    "2024-01-15T10:00:00.000Z ",
    "2024-01-15T10:00:00.000Z\n",
    "2024-1-15T10:00:00.000Z",
    "+2024-01-15T10:00:00.000Z",
    "12024-01-15T10:00:00.000Z",
    "2024-02-30T10:00:00.000Z",  # no such day
    "2023-02-29T10:00:00.000Z",
    "2024-13-01T10:00:00.000Z",
    "2024-00-10T10:00:00.000Z",
    "2024-01-00T10:00:00.000Z",
    "2024-01-15T24:00:00.000Z",
    "2024-01-15T10:60:00.000Z",
    "2016-12-31T23:59:60.000Z",  # a leap second iso_ms never writes
    "0000-01-01T00:00:00.000Z",
    "0999-12-31T23:59:59.999Z",  # iso_ms writes years before 1000 differently
    "２０２４-01-15T10:00:00.000Z",  # digits that are not ASCII
    "2024-01-15T10:00:00.00\u0661Z",
    "1705312800000",
])
def test_parse_rejects_anything_iso_ms_does_not_write(text):
    with pytest.raises(ValueError):
        parse_iso_ms(text)


def test_ids_are_distinct_random_uuid4s_across_refills():
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_ordered_ids_are_distinct_uuid7s_in_the_order_of_their_times():
    ids = [new_ordered_id(1_700_000_000_000 + n // 100) for n in range(2000)]
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
    by_time = [text[:13] for text in ids]  # the 48-bit time, as text
    assert by_time == sorted(by_time)
    assert int(ids[0].replace("-", "")[:12], 16) == 1_700_000_000_000


@pytest.mark.parametrize("start", [0, (1 << 48) - 3, (1 << 62) - 2, 0x1234_5678_9ABC_DEF0_12])
def test_ordered_ids_taken_in_slices_count_up_as_uuid7s(start, monkeypatch):
    # Starts just before the low 48 bits (and the 62 of rand_b) wrap: the groups above carry.
    monkeypatch.setattr(ids_module, "_random_hex", lambda: f"{start:018x}" + "0" * 14)
    run = OrderedIds(1_700_000_000_000)
    ids = run.take(4) + run.take(1) + run.take(5)
    assert len(set(ids)) == 10 and ids == sorted(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert int(text.replace("-", "")[:12], 16) == 1_700_000_000_000
    counted = [(uuid.UUID(text).int >> 64 & 0xFFF) << 62 | uuid.UUID(text).int & (2**62 - 1)
               for text in ids]
    assert counted == list(range(start, start + 10))
