"""The timestamp text of the contract, and the ids of new rows."""

import uuid

from owlmetry.clock import iso_ms
from owlmetry.ids import new_id


def test_timestamps_are_utc_with_milliseconds_and_z():
    assert iso_ms(1705312800000) == "2024-01-15T10:00:00.000Z"
    assert iso_ms(1705312800007) == "2024-01-15T10:00:00.007Z"
    assert iso_ms(1705312801999) == "2024-01-15T10:00:01.999Z"
    assert iso_ms(1705312800000) == "2024-01-15T10:00:00.000Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


def test_ids_are_distinct_random_uuid4s_across_refills():
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
