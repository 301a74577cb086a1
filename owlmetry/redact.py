"""Showing secrets in logs without revealing them: device tokens, JWTs, API keys, emails,
database passwords.

Owns the masking rules every log line follows: a secret shows its first 8 characters, then "…",
so a line can still be matched to a device or key by its prefix; an email shows its first
letter and domain. Must not decide what gets logged.
"""

from urllib.parse import urlsplit

from owlmetry.ids import UUID_TEXT

SHOWN = 8
# Longer than any literal segment of a route ("notifications", "mark-all-read"), shorter than
# the shortest device token (16 hex characters).
LONG_SEGMENT = 16


def mask(secret: str) -> str:
    return secret[:SHOWN] + "…" if len(secret) > SHOWN else secret


def mask_path(path: str) -> str:
    """`path` with every long segment masked, except uuids (row ids are not secrets).

    A client can put anything in a path, a device token or an API key included
    (`DELETE /v1/devices/<token>` by mistake); no route uses such a segment.
    """
    return "/".join(
        mask(segment) if len(segment) >= LONG_SEGMENT and not UUID_TEXT.fullmatch(segment)
        else segment
        for segment in path.split("/")
    )


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a***@example.com`: enough to tell log lines apart."""
    local, at, domain = email.partition("@")
    return f"{local[:1]}***{at}{domain}"


def url_without_password(url: str) -> str:
    """`url` with the password of its user part (postgresql://user:secret@host/db) replaced."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
