"""How a batch of rows travels to PostgreSQL cheaply: each column as one parameter, in the form
that costs the server least to encode.

asyncpg encodes an array parameter element by element, with two `isinstance` checks against
the collections ABCs for each (Python calls); the answers' write of a fan-out passes 20 columns
of ~2,000 rows, and this was ~13% of the server's CPU (benchmarks/RESULTS.md, "Session 12"). So
a column goes as:
- one scalar, when every row has the same value (the batch's time, its owner, "delivered");
- one string, its values joined by a separator the database splits again, when they are all
  text without the separator (ids) or all plain ints;
- the array, otherwise (NULLs among values, other types).
Column i is always parameter `$first + i`, whichever form it takes. Each combination of forms
is a statement of its own, prepared once per connection: batches under PACKED_FROM rows (a
registration's, a renewal's), whose encoding costs little, stay arrays, one statement. Owns
that choice and the SQL that reads the columns back as rows; must hold no statement of a
feature.
"""

import functools

# ASCII's unit separator: no id, token or name the store batches contains it, and a value that
# does makes its column go as an array instead.
SEPARATOR = "\x1f"
SEPARATOR_SQL = "E'\\x1f'"  # the same, as an SQL literal
SCALAR, JOINED, ARRAY = "scalar", "joined", "array"
INTEGER_TYPES = ("integer", "bigint", "smallint")
PACKED_FROM = 64


def column_form(pg_type: str, column: tuple, may_fold: bool) -> tuple[str, object]:
    """(form, parameter) of one column of a batch of PACKED_FROM rows or more."""
    if may_fold and column.count(column[0]) == len(column):
        return SCALAR, column[0]
    if pg_type == "text":
        try:
            joined = SEPARATOR.join(column)
        except TypeError:  # a NULL or a value that is not text
            return ARRAY, column
        # A value holding the separator would split in two; an empty string splits into none.
        if joined and joined.count(SEPARATOR) == len(column) - 1:
            return JOINED, joined
    elif pg_type in INTEGER_TYPES and set(map(type, column)) == {int}:  # not bool, not None
        return JOINED, SEPARATOR.join(map(str, column))
    return ARRAY, column


@functools.cache
def packed_sql(types: tuple[str, ...], forms: tuple[str, ...], first: int) -> str:
    """SELECT of one row per item, from the columns `types` passed in `forms` from `$first`."""
    values, arrays, names = [], [], []
    for i, (pg_type, form) in enumerate(zip(types, forms)):
        parameter = f"${first + i}"
        if form == SCALAR:
            values.append(f"{parameter}::{pg_type}")
            continue
        names.append(f"c{i}")
        values.append(f"c{i}")
        if form == ARRAY:
            arrays.append(f"{parameter}::{pg_type}[]")
        else:
            split = f"string_to_array({parameter}::text, {SEPARATOR_SQL})"
            arrays.append(split if pg_type == "text" else f"{split}::{pg_type}[]")
    return (f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) "
            f"AS b ({', '.join(names)})")


def array_sql(types: tuple[str, ...], first: int = 1) -> str:
    """SELECT of one row per item, from one array per column."""
    return packed_sql(types, (ARRAY,) * len(types), first)


def array_columns(rows, width: int) -> tuple:
    """The arrays (one per column) that carry `rows` to `array_sql`."""
    return tuple(zip(*rows)) if rows else ((),) * width


def packed_batch(types: tuple[str, ...], rows, first: int = 1) -> tuple[str, tuple]:
    """The SQL yielding `rows` (tuples of len(types) values) and its parameters from `$first`."""
    if len(rows) < PACKED_FROM:
        return array_sql(types, first), array_columns(rows, len(types))
    forms, parameters = zip(*(
        # The first column always carries the rows: a batch of equal rows is still that many.
        column_form(pg_type, column, may_fold=i > 0)
        for i, (pg_type, column) in enumerate(zip(types, zip(*rows)))))
    return packed_sql(types, forms, first), parameters
