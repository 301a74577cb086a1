"""Time as the service stores and shows it: integer milliseconds since the Unix epoch, UTC.

Owns the one conversion to the contract's timestamp text (`2024-01-15T10:00:00.000Z`), so both
database backends render identically, and its inverse for text a client sends back (a cursor).
Must not read the database or know about HTTP.
"""

import calendar
import datetime
import re
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


_ISO_MS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")


def parse_iso_ms(text: str) -> int:
    """The milliseconds `iso_ms` renders as `text`; ValueError for any other text.

    Only the exact form `iso_ms` writes is accepted (no offset, no other precision, no day or
    time that does not exist), so `iso_ms(parse_iso_ms(text)) == text` whenever it returns.
    """
    match = _ISO_MS.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        *fields, millis = (int(part) for part in match.groups())
        ms = calendar.timegm(datetime.datetime(*fields).timetuple()) * 1000 + millis
        if iso_ms(ms) != text:  # a year iso_ms writes another way (before 1000)
            raise ValueError
    except ValueError:
        raise ValueError(f"not a timestamp of the form 2024-01-15T10:00:00.000Z: {text!r}") from None
    return ms
