"""Web origins (RFC 6454): `scheme://host[:port]`, the unit a browser's Origin header names.

Owns one rule: the origin of a URL, in one spelling (lower case, no default port), so that
two spellings of one origin compare equal; and what an operator may write as an origin.
Only http and https have origins here; anything else (`null`, `file:`) has none.
"""

import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """The origin of an absolute http(s) URL (an Origin or Referer header), or None."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname  # lower case, without userinfo
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def parse_origin(text: str) -> str:
    """An origin as an operator writes one; ValueError saying what is wrong."""
    origin = origin_of(text)
    parts = urllib.parse.urlsplit(text.strip())
    if origin is None or parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r} is not an origin (expected scheme://host[:port], "
                         "such as https://app.example.com)")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an origin: it has a path, query or fragment "
                         f"(did you mean {origin}?)")
    return origin
