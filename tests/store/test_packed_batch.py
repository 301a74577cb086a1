"""A batch of rows comes back from the database exactly as sent, whatever form its columns
travel in (`owlmetry.store.packed_batch` on PostgreSQL: scalars, joined strings, arrays), on
both engines."""

import pytest

from owlmetry.store import packed_batch
from owlmetry.store.packed_batch import PACKED_FROM

TYPES = ("text", "bigint", "text", "integer")


async def round_trip(store, rows, types=TYPES):
    return await store.execute_batch(
        "WITH batch AS ({batch}) SELECT * FROM batch", types, rows)


@pytest.mark.parametrize("rows", [
    # ids that vary, a time and a name every row shares, counts that vary
    [("n1", 1_764_800_000_000, "mobile_push", 1), ("n2", 1_764_800_000_000, "mobile_push", 3)],
    # NULLs among values, and a column of NULLs only
    [("n1", None, None, 2), ("n2", 5, None, None), ("n3", 6, None, 2)],
    # a value holding the separator, and an empty string
    [("a\x1fb", 1, "", 0), ("c", 2, "x", 0), ("", 3, "\x1f", -1)],
    # empty strings only
    [("", 1, "", 0), ("", 2, "", 0)],
    # the same row twice stays two rows
    [("same", 7, "same", 7), ("same", 7, "same", 7)],
    # text that is not ASCII, ints past 32 bits, negatives
    [("é—✓", -(2 ** 40), "ü", -5), ("z", 2 ** 53, "日本", 2 ** 31 - 1)],
    # one row, and one row of NULLs
    [("only", 1, "row", 1)],
    [(None, None, None, None)],
])
@pytest.mark.parametrize("packed", [False, True], ids=["few", "packed"])
async def test_rows_come_back_as_sent(store, rows, packed):
    if packed:  # the same pattern of values, in a batch big enough to be packed
        rows = rows * -(-PACKED_FROM // len(rows))
    assert await round_trip(store, rows) == rows


async def test_a_thousand_rows_keep_their_order_and_values(store):
    rows = [(f"id-{i:05d}", i * 1_000_003, "delivered" if i % 7 else "failed", i % 3)
            for i in range(1_000)]
    assert await round_trip(store, rows) == rows


async def test_a_boolean_in_an_integer_column_comes_back_as_a_number(store):
    # Packing must not turn True into the text 'True', which no integer column reads.
    rows = [("a", 1, "x", True), ("b", 2, "x", 0), ("c", 3, "x", 2)] * PACKED_FROM
    counts = [row[3] for row in await round_trip(store, rows)]
    assert counts == [1, 0, 2] * PACKED_FROM and all(type(count) is int for count in counts)


def test_each_column_goes_in_the_cheapest_form_that_keeps_it():
    rows = [(f"n{i}", 10, "mobile_push", i, None) for i in range(PACKED_FROM)]
    rows[1] = ("n1", 10, "mobile_push", True, "r")
    sql, params = packed_batch.packed_batch(TYPES + ("text",), rows, first=4)
    # The varying ids joined, the shared time and name as scalars, a bool among ints and a
    # NULL among text as arrays; each column is its own parameter in order from $4.
    assert params == ("\x1f".join(row[0] for row in rows), 10, "mobile_push",
                      tuple(row[3] for row in rows), tuple(row[4] for row in rows))
    assert sql == ("SELECT c0, $5::bigint, $6::text, c3, c4 FROM unnest("
                   "string_to_array($4::text, E'\\x1f'), $7::integer[], $8::text[]) "
                   "AS b (c0, c3, c4)")


def test_the_first_column_carries_the_rows_even_when_every_row_is_equal():
    sql, params = packed_batch.packed_batch(("text", "bigint"), [("a", 1)] * PACKED_FROM)
    assert params == ("\x1f".join(["a"] * PACKED_FROM), 1)
    assert "unnest(string_to_array($1::text" in sql


def test_a_small_batch_is_one_statement_of_arrays_whatever_its_values():
    statements = {packed_batch.packed_batch(TYPES, rows)[0] for rows in (
        [("a", 1, "x", 1)], [("a", 1, "x", 1), ("b", 1, "x", 2)], [(None, None, None, None)])}
    assert statements == {packed_batch.array_sql(TYPES)}


# SQLite's batches (`owlmetry.store.sqlite`): bound `VALUES` rows padded to a size and cut by a
# LIMIT, a flat JSON array for one column, JSON rows past the biggest size.
@pytest.mark.parametrize("count", [1, 2, 3, 255, 256, 257])
async def test_a_batch_of_any_size_comes_back_without_padding(store, count):
    rows = [(f"id-{i}", i, None if i % 2 else "x", -i) for i in range(count)]
    assert await round_trip(store, rows) == rows


@pytest.mark.parametrize("count", [1, 3, 300])
async def test_a_batch_of_one_column_comes_back_as_sent(store, count):
    values = ["", "é—✓", "[1, 2]", '"quoted"', "a\\b", None, "0"]
    rows = [(values[i % len(values)],) for i in range(count)]
    assert await round_trip(store, rows, ("text",)) == rows
