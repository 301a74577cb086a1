"""Time as the service stores and shows it: integer milliseconds since the Unix epoch, UTC.

Owns the one conversion to the contract's timestamp text (`2024-01-15T10:00:00.000Z`), so both
database backends render identically. Must not read the database or know about HTTP.
"""

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
