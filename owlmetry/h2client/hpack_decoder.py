"""HPACK decoding of answers for a connection that advertises a zero-size header table.

With SETTINGS_HEADER_TABLE_SIZE 0 the peer can keep nothing in a dynamic table, so decoding is
stateless: static-table references and literals only. Huffman strings are decoded a byte at a
time through transitions learnt on first use rather than a bit at a time down the code tree;
the values of fields a provider never reads are stepped over undecoded. Must not know about
streams, connections or providers.
"""

from hpack import HPACKDecodingError
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

_STATIC = HeaderTable.STATIC_TABLE
_STATIC_SIZE = len(_STATIC)
_MEMO_SIZE = 512
_BLOCKS_SIZE = 256
_EOS = 256


def _huffman_tree() -> list[list[int]]:
    """Internal nodes as [child for bit 0, child for bit 1]; a leaf is stored as -(symbol+1)."""
    nodes = [[0, 0]]
    for symbol, (code, length) in enumerate(zip(REQUEST_CODES, REQUEST_CODES_LENGTH)):
        node = 0
        for shift in range(length - 1, 0, -1):
            bit = (code >> shift) & 1
            if not nodes[node][bit]:
                nodes.append([0, 0])
                nodes[node][bit] = len(nodes) - 1
            node = nodes[node][bit]
        nodes[node][code & 1] = -(symbol + 1)
    return nodes


_TREE = _huffman_tree()


def _padding_states() -> frozenset[int]:
    """States a string may end in: the root, or up to 7 bits down the all-ones (EOS) path."""
    states, node = {0}, 0
    for _ in range(7):
        node = _TREE[node][1]
        states.add(node)
    return frozenset(states)


_PADDING = _padding_states()
_TRANSITIONS: dict[int, tuple[int, bytes]] = {}  # (state << 8 | byte) -> (state, output)


def _learn(key: int) -> tuple[int, bytes]:
    node, byte, out = key >> 8, key & 0xFF, bytearray()
    for shift in range(7, -1, -1):
        node = _TREE[node][(byte >> shift) & 1]
        if node < 0:
            if node == -(_EOS + 1):
                raise HPACKDecodingError("EOS symbol inside a Huffman string")
            out.append(-node - 1)
            node = 0
    transition = _TRANSITIONS[key] = (node, bytes(out))
    return transition


def decode_huffman(data) -> bytes:
    state, parts, transitions = 0, [], _TRANSITIONS
    for byte in data:
        key = state << 8 | byte
        state, out = transitions.get(key) or _learn(key)
        parts.append(out)
    if state not in _PADDING:
        raise HPACKDecodingError("invalid Huffman padding")
    return b"".join(parts)


def _integer(data, i: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = data[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 28:
            raise HPACKDecodingError("HPACK integer too long")


def _string(data, i: int, memo: dict | None) -> tuple[bytes, int]:
    first = data[i]
    if first < 0x7F or 0x80 <= first < 0xFF:  # the length fits the first byte
        length, i = first & 0x7F, i + 1
    else:
        length, i = _integer(data, i, 7)
    huffman = first & 0x80
    end = i + length
    if end > len(data):
        raise HPACKDecodingError("HPACK string runs past the header block")
    raw = bytes(data[i:end])
    if not huffman:
        return raw, end
    if memo is None:
        return decode_huffman(raw), end
    text = memo.get(raw)
    if text is None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        text = memo[raw] = decode_huffman(raw)
    return text, end


def _static(index: int) -> tuple[bytes, bytes]:
    if 0 < index <= _STATIC_SIZE:
        return _STATIC[index - 1]
    raise HPACKDecodingError(f"index {index} is outside the static table (table size 0)")


class ZeroTableDecoder:
    """Drop-in for `hpack.Decoder` in h2, valid only while our HEADER_TABLE_SIZE is 0.

    Without a table the peer re-sends names and values that repeat (`apns-id` as a name,
    `date`, `content-type`), so decoded strings are remembered, and so are whole blocks.
    Fields named in `unread_names` (a provider's per-answer ids it never reads, like APNs'
    `apns-id`, the echo of the request's own) are left out undecoded, and a block holding one,
    which never repeats, is not remembered whole: its bytes around the one unread value are
    (`_around`), since any block of the same length with the same bytes there decodes alike.
    """

    def __init__(self, unread_names: frozenset[bytes] = frozenset()):
        self.max_header_list_size = 1 << 16
        self.max_allowed_table_size = 0
        self._unread_names = unread_names
        self._memo: dict[bytes, bytes] = {}
        # Whole blocks: a peer's answers of one kind repeat byte for byte (FCM's 200: status,
        # content-type, the date of this second), unless they carry a unique value.
        self._blocks: dict[bytes, list] = {}
        self._cacheable = True
        # (length, bytes before, bytes after, fields) of the latest block with one unread
        # value: APNs' every answer is `:status` and an `apns-id` that differs only there.
        self._around: tuple[int, bytes, bytes, list] | None = None
        self._unread_at: tuple[int, int] | None = None  # where the one unread value lies

    def decode(self, data, raw: bool = True) -> list[tuple[bytes, bytes]]:
        """The block's fields; the same list for the same block (callers must not change it)."""
        headers = self._blocks.get(data)
        if headers is not None:
            return headers
        around = self._around
        if (around is not None and len(data) == around[0] and data.startswith(around[1])
                and data.endswith(around[2])):
            return around[3]
        headers = self._decode(data)
        if self._cacheable:
            if len(self._blocks) >= _BLOCKS_SIZE:
                self._blocks.clear()
            self._blocks[bytes(data)] = headers
        elif self._unread_at is not None:
            start, end = self._unread_at
            self._around = (len(data), bytes(data[:start]), bytes(data[end:]), headers)
        return headers

    def _decode(self, data) -> list[tuple[bytes, bytes]]:
        self._cacheable = True
        self._unread_at = None
        headers, i, n, size = [], 0, len(data), 0
        memo, unread = self._memo, self._unread_names
        while i < n:
            first = data[i]
            if first & 0x80:  # indexed field
                if first == 0xFF:
                    index, i = _integer(data, i, 7)
                else:
                    index, i = first & 0x7F, i + 1
                headers.append(_static(index))
                continue
            if first & 0xC0 == 0x40:  # literal with incremental indexing: no table, same thing
                index, i = _integer(data, i, 6)
            elif first & 0xE0 == 0x20:  # dynamic table size update
                new_size, i = _integer(data, i, 5)
                if new_size:
                    raise HPACKDecodingError("table size update above the advertised 0")
                continue
            else:  # literal without indexing / never indexed
                index, i = _integer(data, i, 4)
            if index:
                name = _static(index)[0]
            else:
                name, i = _string(data, i, memo)
            if name in unread:
                # The value's length is before `start`: it is part of what the block is.
                length, start = _integer(data, i, 7)
                size += 32 + len(name) + start - i + length
                i = start + length
                if i > n:
                    raise HPACKDecodingError("HPACK string runs past the header block")
                self._unread_at = None if not self._cacheable else (start, i)
                self._cacheable = False
            else:
                value, i = _string(data, i, memo)
                size += 32 + len(name) + len(value)
                headers.append((name, value))
            if size > self.max_header_list_size:
                raise HPACKDecodingError("header list larger than advertised")
        return headers
