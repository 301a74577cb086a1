"""Requests through a reverse proxy: the client's address, scheme and host from
X-Forwarded-For/-Proto/-Host.

Owns the trust rule: the headers are believed only when the direct peer is in TRUSTED_PROXIES,
and X-Forwarded-For is read from the right (the end a trusted proxy appended to), skipping
trusted addresses, so a client cannot choose its own address by sending the header itself.
The middleware hands the rest of the app a `request.clone(remote=..., scheme=..., host=...)`,
so `request.remote`, `request.secure` and `request.host` are the client's everywhere after it.
It must be the outermost middleware (a request cannot be cloned once its body is read), and it
never fails a request: a malformed header is ignored.
"""

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web

from owlmetry.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The request the handlers saw (the clone), kept on the original one for the access log,
# which aiohttp calls with the original.
SEEN_AS = web.RequestKey("seen_as", web.Request)

SCHEMES = {"http", "https"}
# A host and optional port as a Host header carries them (a name, IPv4, or bracketed IPv6).
HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def parse_address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; trust is written in IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: IPAddress, forwarded_for: list[str],
                   trusted: tuple[IPNetwork, ...]) -> IPAddress:
    """The first untrusted address from the right of the hop list, ending with the peer.

    `forwarded_for` is every X-Forwarded-For header's value, in order. Any entry that is not a
    bare IP address makes the whole header unusable (the peer is the answer then): a proxy that
    wrote garbage cannot be relied on for the entries around it either.
    """
    hops = [peer]
    for value in forwarded_for:
        for entry in value.split(","):
            address = parse_address(entry)
            if address is None:
                return peer
            hops.insert(-1, address)
    for address in reversed(hops):
        if not is_trusted(address, trusted):
            return address
    # Every hop is trusted (a request from the proxy host itself): the furthest one is the client.
    return hops[0]


def forwarded_scheme(values: list[str]) -> str | None:
    """The scheme the nearest proxy reported (the last value), if it is http or https."""
    if not values:
        return None
    scheme = values[-1].split(",")[-1].strip().lower()
    return scheme if scheme in SCHEMES else None


def forwarded_host(values: list[str]) -> str | None:
    """The host the nearest proxy reported (the last value), if it looks like one."""
    if not values:
        return None
    host = values[-1].split(",")[-1].strip()
    return host if HOST.fullmatch(host) else None


def forwarded(trusted: tuple[IPNetwork, ...]):
    """The middleware, for the configured trusted proxies (none: it is not installed)."""

    @web.middleware
    async def resolve(request: web.Request, handler):
        peer = parse_address(request.remote or "")
        if peer is None or not is_trusted(peer, trusted):
            return await handler(request)
        changes = {}
        client = client_address(peer, request.headers.getall("X-Forwarded-For", []), trusted)
        if client != peer or request.remote != str(peer):
            changes["remote"] = str(client)
        scheme = forwarded_scheme(request.headers.getall("X-Forwarded-Proto", []))
        if scheme is not None and scheme != request.scheme:
            changes["scheme"] = scheme
        host = forwarded_host(request.headers.getall("X-Forwarded-Host", []))
        if host is not None and host != request.host:
            changes["host"] = host
        if not changes:
            return await handler(request)
        seen = request.clone(**changes)
        request[SEEN_AS] = seen
        return await handler(seen)

    return resolve
