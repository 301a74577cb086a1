"""Row ids: random uuid4s for new rows, made without a system call per id; time-ordered uuid7s
for notifications and devices; and the rule for what an id looks like.

`uuid.uuid4()` asks the kernel for 16 bytes each time, which costs more than the rest of a
small request on a busy virtual machine; here the kernel's randomness is fetched a few KiB at
a time and cut into ids. Same source, same quality, fewer calls.
"""

import os
import re

# Any uuid, in either case: what every row id is.
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

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
