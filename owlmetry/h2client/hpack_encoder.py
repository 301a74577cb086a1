"""HPACK encoding of requests as ready bytes: every field a literal *without indexing*.

No header ever enters the peer's dynamic table, so a field encoded once stays valid on every
connection for ever: a provider encodes its constant fields once (per kind of request, or per
project) and a request only adds what changes (usually its `:path`). Keeping `:path` and
`authorization` out of a peer's small dynamic table is what APNs asks for anyway. Must not do
I/O or know about any provider's headers.
"""

# HPACK static table indices (RFC 7541, appendix A).
_AUTHORITY, _PATH, _AUTHORIZATION = 1, 4, 23
# `:method` and `:scheme https` as whole entries of the static table: a request's first fields.
POST = b"\x83\x87"
GET = b"\x82\x87"
# "Dynamic table size update to 0", sent first on each connection: this encoder keeps no table,
# so no later SETTINGS_HEADER_TABLE_SIZE from the peer can oblige it to signal anything.
TABLE_SIZE_ZERO = b"\x20"


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return _integer(len(raw), 7, 0) + raw


def literal(name: bytes | int, value: bytes) -> bytes:
    """One header field as 'literal without indexing'; `name` is a static index or the name
    (lower case, as HTTP/2 requires)."""
    if isinstance(name, int):
        return _integer(name, 4, 0) + _string(value)
    return b"\x00" + _string(name) + _string(value)


def authority_field(host: str, port: int) -> bytes:
    return literal(_AUTHORITY, (host if port == 443 else f"{host}:{port}").encode())


def authorization_field(value: bytes) -> bytes:
    return literal(_AUTHORIZATION, value)


# `:path` fields of fewer than 127 bytes: PATH_PREFIXES[len(path)] + path (one-byte length).
PATH_PREFIXES = [bytes((_PATH, n)) for n in range(127)]


def path_field(path: bytes) -> bytes:
    if len(path) < 127:
        return PATH_PREFIXES[len(path)] + path
    return literal(_PATH, path)
