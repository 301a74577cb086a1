"""Row ids: random uuid4s for new rows, made without a system call per id; time-ordered uuid7s
for notifications and devices; and the rule for what an id looks like, and its one spelling.

`uuid.uuid4()` asks the kernel for 16 bytes each time, which costs more than the rest of a
small request on a busy virtual machine; here the kernel's randomness is fetched a few KiB at
a time and cut into ids. Same source, same quality, fewer calls.
"""

import os
import re

# Any uuid, in either case: what every row id is.
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
URN_PREFIX = "urn:uuid:"
# A uuid as rows store it: the spelling nearly every id arrives in.
STORED_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_id(text: str) -> str | None:
    """The row id `text` names, as rows store it (lower-case, hyphenated): a uuid in any case,
    braced (`{...}`, as Windows writes them) or as a `urn:uuid:` URN (RFC 9562). None when
    `text` is none of those, so it names no row."""
    if text[:len(URN_PREFIX)].lower() == URN_PREFIX:
        text = text[len(URN_PREFIX):]
    elif text[:1] == "{" and text[-1:] == "}":
        text = text[1:-1]
    return text.lower() if UUID_TEXT.fullmatch(text) else None


def normalize_ids(texts: list[str]) -> dict[str, str | None]:
    """`normalize_id` of each of `texts`, by text; a producer's list of tens of thousands
    costs a few ms, as ids already in the stored spelling skip the rest of the rules."""
    stored = STORED_UUID.fullmatch
    return {text: text if stored(text) else normalize_id(text) for text in texts}

_BATCH = 16 * 256
_buffer = b""
_offset = _BATCH


def _random_hex() -> str:
    """32 random hex digits."""
    global _buffer, _offset
    if _offset >= _BATCH:
        _buffer, _offset = os.urandom(_BATCH), 0
    hex_ = _buffer[_offset:_offset + 16].hex()
    _offset += 16
    return hex_


def new_id() -> str:
    hex_ = _random_hex()
    # RFC 9562 version 4: the version nibble is 4, the variant's top bits are 10.
    variant = "89ab"[int(hex_[16], 16) & 3]
    return f"{hex_[:8]}-{hex_[8:12]}-4{hex_[13:16]}-{variant}{hex_[17:20]}-{hex_[20:]}"


def new_ordered_id(now_ms: int) -> str:
    """RFC 9562 version 7: the time (ms) first, then randomness. A table's rows written at one
    time land side by side in its primary key's index, at its end, however big it is -- a
    fan-out's ten thousand inbox rows touch a few pages of it, not ten thousand."""
    hex_ = _random_hex()
    variant = "89ab"[int(hex_[16], 16) & 3]
    time_ = f"{now_ms & 0xFFFF_FFFF_FFFF:012x}"
    return f"{time_[:8]}-{time_[8:]}-7{hex_[13:16]}-{variant}{hex_[17:20]}-{hex_[20:]}"


def new_ordered_ids(now_ms: int, n: int) -> list[str]:
    """`n` version 7 ids of one time, ascending: a random start, then counting up through the
    random bits (RFC 9562 section 6.2, method 2). For a fan-out that writes its rows in id
    order without sorting them."""
    return OrderedIds(now_ms).take(n)


class OrderedIds:
    """`new_ordered_ids` a few at a time: each `take` goes on counting where the last stopped,
    so a long run of ids can be made in slices between other work."""

    def __init__(self, now_ms: int):
        time_ = f"{now_ms & 0xFFFF_FFFF_FFFF:012x}"
        self._head = f"{time_[:8]}-{time_[8:]}-7"
        # rand_a (12 bits) and rand_b (62) as one 74-bit number; a 72-bit start leaves room
        # to count.
        self._next = int(_random_hex()[:18], 16)

    def take(self, n: int) -> list[str]:
        ids = _counting_ids(self._head, self._next, n)
        self._next += n
        return ids


def _counting_ids(head: str, start: int, n: int) -> list[str]:
    """The ids of `head` and the 74-bit values start, start + 1, ... (n of them)."""
    ids: list[str] = []
    value, end = start, start + n
    while value < end:
        # Until the low 48 bits wrap, only the last group changes: one format per id.
        stop = min(end, ((value >> 48) + 1) << 48)
        prefix = f"{head}{value >> 62:03x}-{0x8000 | (value >> 48) & 0x3FFF:04x}-"
        low = value & 0xFFFF_FFFF_FFFF
        ids += [f"{prefix}{count:012x}" for count in range(low, low + stop - value)]
        value = stop
    return ids
