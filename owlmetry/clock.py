"""Time as the service stores and shows it: integer milliseconds since the Unix epoch, UTC.

Owns the one conversion to the contract's timestamp text (`2024-01-15T10:00:00.000Z`), so both
database backends render identically. Must not read the database or know about HTTP.
"""

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_last_second: tuple[int, str] = (-1, "")


def iso_ms(ms: int) -> str:
    global _last_second
    seconds, millis = divmod(ms, 1000)
    # Most timestamps a busy server formats fall in the same second; format that part once.
    if _last_second[0] != seconds:
        _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_last_second[1]}.{millis:03d}Z"
