"""The one module that relies on h2's internals: `ClientH2`, h2's client connection with the
changes push traffic (many small requests on long-lived connections) needs, and a check at
import that each internal is still there and still does what `ClientH2` expects.

h2 is a sans-IO state machine; `connection.Connection` drives this one (bytes in, events out,
bytes to write). Must not do I/O or know about requests, pools or providers, and must never
fall back silently: with an h2 release whose internals moved, importing this module fails with
an ImportError naming the h2 version and the internal, instead of a connection losing streams.

The internals, each exercised by `_self_check` against h2's own server state machine:

- `H2Connection._begin_new_stream`, the connection's and the stream's `state_machine` inputs
  and the stream's `outbound_flow_control_window`: `send_request` takes the steps of
  send_headers + send_data with them.
- `H2Connection._closed_streams` (and `MAX_CLOSED_STREAMS`): `forget` records how a stream
  ended, as h2's own clean-up does, so that an answer still in flight for a stream this side
  reset is a stream error, not a connection error. It is a plain `OrderedDict` that `forget`
  keeps to h2's size: h2's own (a subclass checking its size in Python on every write) cost
  two Python calls a stream.
- `H2Connection._receive_goaway_frame`: overridden, see `ClientH2`.
- h2 calling `encoder.encode(headers)` (and setting `encoder.header_table_size`) and
  `decoder.decode(block, raw=True)` (and setting `decoder.max_header_list_size` and
  `max_allowed_table_size`): the stand-in codecs.
- h2 counting open streams through `open_outbound_streams` before a new stream.
- `H2Connection.state_machine.state` (`ConnectionState.CLOSED` once this side closed) and
  `H2Connection.incoming_buffer` taking whole frames: `receive_data` reads the answers on
  streams this side opened itself and hands every other frame to h2, in order.
- `H2Connection._data_to_send`, h2's buffer of bytes to write: hand-built frames go to a
  buffer of our own after whatever h2 made before them (taken from h2's buffer directly: its
  `data_to_send` made two objects and a Python call per request), and `data_to_send` returns
  h2's bytes and ours in the order they were made.
"""

import collections
import contextlib
import inspect

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.connection import ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from h2.stream import StreamClosedBy
from h2.utilities import is_informational_response
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, WindowUpdateFrame

from .hpack_decoder import ZeroTableDecoder

_CONFIG = h2.config.H2Configuration(
    client_side=True, header_encoding=None,
    validate_outbound_headers=False, normalize_outbound_headers=False,
    validate_inbound_headers=False, normalize_inbound_headers=False)


class PreEncodedHeaders:
    """Stands in for h2's HPACK encoder: the one 'header' h2 hands over is a ready block.

    Requests are encoded (`hpack_encoder`) as stateless literals, so h2's own encoder
    (Huffman, table search, per request) has nothing to add.
    """

    header_table_size = 4096  # h2 writes the peer's setting here; a table-less encoder ignores it

    @staticmethod
    def encode(headers):
        return headers[0][1]


# Frame types and flags (RFC 9113 §6) the answers' fast path reads.
_DATA, _HEADERS, _RST_STREAM, _PUSH_PROMISE, _CONTINUATION = 0x0, 0x1, 0x3, 0x5, 0x9
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
# What `_answers` knows of a stream in flight (bits). _LIGHT: opened by `send_request`, so h2
# has no stream object for it and everything on it is read here; _HEADED: its answer's headers
# were read here; _H2S: h2 reads the rest of its answer (never _LIGHT); _RST_IN / _RST_OUT:
# reset by the peer / by this side, for how it ended (`forget`).
_HEADED, _H2S, _LIGHT, _RST_IN, _RST_OUT = 1, 2, 4, 8, 16


class Answered:
    """The answer's headers on a stream in flight (`ended`: the answer has no body)."""

    __slots__ = ("ended", "headers", "stream_id")

    def __init__(self, stream_id: int, headers: list, ended: int):
        self.stream_id, self.headers, self.ended = stream_id, headers, ended


class Body:
    """A piece of the answer's body on a stream in flight (`ended`: its last). Its window is
    given back by `ClientH2` itself: nothing to acknowledge."""

    __slots__ = ("data", "ended", "stream_id")

    def __init__(self, stream_id: int, data: bytes, ended: int):
        self.stream_id, self.data, self.ended = stream_id, data, ended


class Reset:
    """The peer reset a stream in flight that `send_request` opened (RST_STREAM)."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int):
        self.stream_id, self.error_code = stream_id, error_code


class ClientH2(h2.connection.H2Connection):
    """h2's client connection with the adjustments push traffic needs.

    - Headers go out pre-encoded (`PreEncodedHeaders`), and answers are decoded without a
      table (`ZeroTableDecoder`, valid because our SETTINGS_HEADER_TABLE_SIZE is 0).
    - h2 counts open streams by walking every stream for each new one; the connection already
      knows the count (`in_flight`). Finished streams are forgotten by `forget` as they end.
    - On GOAWAY, h2 closes the whole state machine and drops unsent bytes, so streams at or
      below last_stream_id could never finish; RFC 9113 §6.8 lets them finish.
    - `send_request` opens a stream with a ready header block and its whole body as two
      hand-built frames, and without an h2 stream object ("light"): h2 only learns that the
      stream id is used (`highest_outbound_stream_id`) and the connection window it took
      (`outbound_flow_control_window`); creating, driving and dropping h2's per-stream state
      machines and windows for a request whose body is already sent cost more than the rest
      of the request (RESULTS.md, issue 13's FCM CPU). So everything that arrives on a light
      stream in flight is read here (its answer, its RST_STREAM), a reset is built here
      (`reset_stream`), and `forget` records how it ended for h2 (`_closed_streams`), so that
      h2 treats late frames on it as on any closed stream. Requests too big for one frame or
      the windows go through h2's own send_headers/send_data and have an h2 stream.
    - `receive_data` reads the answers on streams in flight itself (`Answered`, `Body`,
      `Reset`; a stream's trailers only end it, as an empty last `Body`): HEADERS (with their
      CONTINUATIONs on a light stream), DATA and, on a light stream, RST_STREAM, parsed in
      place, without frame objects, their repr for h2's trace log, or state machines. Every
      other frame (SETTINGS, PING, GOAWAY, WINDOW_UPDATE, a frame on a stream no longer in
      flight, or an answer h2 began reading) goes to h2 whole and in order, as does all input
      once this side closed the connection. The connection window the fast path's DATA used
      is given back here (half the receive window at a time); h2's own accounting covers only
      what h2 read.
    """

    def __init__(self, in_flight: dict, receive_window: int,
                 unread_headers: frozenset[bytes] = frozenset()):
        super().__init__(config=_CONFIG)
        self.local_settings = h2.settings.Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: receive_window,
            SettingCodes.HEADER_TABLE_SIZE: 0,
        })
        self._closed_streams = collections.OrderedDict()
        self.encoder = PreEncodedHeaders()
        self.decoder = ZeroTableDecoder(unread_headers)
        self.in_flight = in_flight
        self._output = bytearray()  # h2's bytes made before the last hand-built frames, then those
        self._input = bytearray()  # an incomplete frame, until the rest arrives
        self._answers: dict[int, int] = {}  # stream id -> _HEADED or _H2S
        self._ack_at = receive_window // 2
        self._unacked = 0  # connection window the fast path's DATA used, not given back yet
        self._stream_unacked: dict[int, int] = {}  # the same per stream, for long bodies
        self._continuing = False  # h2 holds a header block waiting for its CONTINUATION
        self._block = None  # (stream id, flags, fragments) of a light stream's header block
        self._peer_limits()

    def _peer_limits(self) -> None:
        """What `send_request` checks, read once per change (only SETTINGS change them)."""
        self._max_frame = self.max_outbound_frame_size
        self._stream_window = self.remote_settings.initial_window_size

    def _h2_receive(self, data) -> list:
        events = h2.connection.H2Connection.receive_data(self, data)
        self._peer_limits()
        return events

    @property
    def open_outbound_streams(self) -> int:
        return len(self.in_flight)

    def forget(self, stream_id: int) -> None:
        closed = self._closed_streams
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            closed[stream_id] = stream.closed_by
        state = self._answers.pop(stream_id, None)
        if state is not None:
            self._stream_unacked.pop(stream_id, None)
            if state & _LIGHT:
                closed[stream_id] = (
                    StreamClosedBy.RECV_RST_STREAM if state & _RST_IN else
                    StreamClosedBy.SEND_RST_STREAM if state & _RST_OUT else
                    StreamClosedBy.RECV_END_STREAM)
        if len(closed) > self.MAX_CLOSED_STREAMS:
            closed.popitem(last=False)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        state = self._answers.get(stream_id)
        if state is None or not state & _LIGHT:
            super().reset_stream(stream_id, error_code)
            return
        self.state_machine.process_input(ConnectionInputs.SEND_RST_STREAM)
        self._answers[stream_id] = state | _RST_OUT
        self._append(b"\x00\x00\x04\x03\x00" + stream_id.to_bytes(4, "big")
                     + int(error_code).to_bytes(4, "big"))

    def receive_data(self, data) -> list:
        """h2's `receive_data`, with the answers on streams in flight read here (see the class)."""
        if self._input:
            self._input += data
            data = bytes(self._input)
            self._input.clear()
        events: list = []
        n, pos, given = len(data), 0, 0  # given: bytes up to here are handed over or read
        in_flight, answers = self.in_flight, self._answers
        max_size = self.max_inbound_frame_size
        fast = self.state_machine.state is not ConnectionState.CLOSED
        continuing = self._continuing
        while n - pos >= 9:
            length = data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
            end = pos + 9 + length
            if length > max_size or end > n:
                break
            kind, flags = data[pos + 3], data[pos + 4]
            stream_id = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            if self._block is not None:  # a light stream's header block goes on
                if kind != _CONTINUATION or stream_id != self._block[0]:
                    self._refuse("a frame inside a header block")
                self._block[2].append(data[pos + 9:end])
                pos = given = end
                if flags & _END_HEADERS:
                    stream_id, flags, parts = self._block
                    self._block = None
                    self._headers(events, stream_id, flags, b"".join(parts))
                continue
            state = (answers.get(stream_id, 0) if fast and not continuing and stream_id in in_flight
                     else _H2S)
            if kind > _HEADERS and not (kind == _RST_STREAM and state & _LIGHT):
                if kind == _PUSH_PROMISE or kind == _CONTINUATION:
                    continuing = not flags & _END_HEADERS
                pos = end
                continue
            start, stop = pos + 9, end
            if flags & _PADDED and kind != _RST_STREAM:
                stop -= data[start] if length else end  # no pad length: a PROTOCOL_ERROR
                start += 1
            if kind == _HEADERS and flags & _PRIORITY:
                start += 5
            if (state & _H2S or stop < start or (kind == _DATA and not state & _HEADED)
                    or (kind == _HEADERS and not flags & _END_HEADERS and not state & _LIGHT)):
                if state & _LIGHT:  # h2 knows nothing of this stream: no one else can read it
                    self._refuse("a malformed frame or DATA before HEADERS")
                if not state & _H2S:
                    answers[stream_id] = _H2S  # h2 reads the rest of this answer
                if kind == _HEADERS:
                    continuing = not flags & _END_HEADERS
                pos = end
                continue
            if given < pos:  # what came before goes first
                events += self._h2_receive(data[given:pos])
            pos = given = end
            if kind == _DATA:
                self._unacked += length
                if not flags & _END_STREAM:
                    self._hold_stream_window(stream_id, length)
                events.append(Body(stream_id, data[start:stop], flags & _END_STREAM))
            elif kind == _HEADERS:
                if flags & _END_HEADERS:
                    self._headers(events, stream_id, flags, data[start:stop])
                else:
                    self._block = (stream_id, flags, [data[start:stop]])
            else:  # RST_STREAM on a light stream
                if length != 4:
                    self.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
                    raise h2.exceptions.FrameSizeError("RST_STREAM of a length other than 4")
                answers[stream_id] = state | _RST_IN
                events.append(Reset(stream_id, int.from_bytes(data[start:stop], "big")))
        self._continuing = continuing
        if given < pos:
            events += self._h2_receive(data[given:pos])
        if pos < n:
            if n - pos >= 9 and (data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]) > max_size:
                events += self._h2_receive(data[pos:])  # h2's FRAME_SIZE_ERROR
            else:
                self._input += data[pos:]
        if self._unacked >= self._ack_at:
            self._window_update(0, self._unacked)
            self._unacked = 0
        return events

    def _headers(self, events: list, stream_id: int, flags: int, block: bytes) -> None:
        """A whole header block of a stream in flight: its answer, a 1xx, or its trailers."""
        state = self._answers.get(stream_id, 0)
        try:
            headers = self.decoder.decode(block, raw=True)
        except (hpack.HPACKError, IndexError, TypeError) as exc:  # as h2's _decode_headers
            self.close_connection(ErrorCodes.COMPRESSION_ERROR)
            raise h2.exceptions.ProtocolError(f"error decoding header block: {exc}") from exc
        # `:status` comes first (RFC 9113 §8.3): read there without a call to h2's helper,
        # which also finds it further down.
        informational = (headers[0][1][:1] == b"1" if headers and headers[0][0] == b":status"
                         else is_informational_response(headers))
        if state & _HEADED:  # trailers: nothing a provider reads, only the end
            if not flags & _END_STREAM:
                self._refuse("trailers without END_STREAM")
            events.append(Body(stream_id, b"", _END_STREAM))
        elif informational:  # 1xx: the answer follows
            if flags & _END_STREAM:
                self._refuse("an informational answer with END_STREAM")
        else:
            self._answers[stream_id] = state | _HEADED
            events.append(Answered(stream_id, headers, flags & _END_STREAM))

    def _refuse(self, what: str):
        self.close_connection(ErrorCodes.PROTOCOL_ERROR)
        raise h2.exceptions.ProtocolError(f"received {what}")

    def _hold_stream_window(self, stream_id: int, length: int) -> None:
        """A body in several DATA frames: give its stream's window back as it is used."""
        used = self._stream_unacked.get(stream_id, 0) + length
        if used >= self._ack_at:
            self._window_update(stream_id, used)
            used = 0
        self._stream_unacked[stream_id] = used

    def _window_update(self, stream_id: int, increment: int) -> None:
        self._append(b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big")
                     + increment.to_bytes(4, "big"))

    def _append(self, frames: bytes) -> None:
        """Hand-built frames, after whatever h2 made before them."""
        out = self._output
        earlier = self._data_to_send
        if earlier:
            out += earlier
            earlier.clear()
        out += frames

    def send_request(self, stream_id: int, block: bytes, body: bytes) -> bool:
        """HEADERS(END_HEADERS) + DATA(END_STREAM) on a light stream; False, with nothing
        done, when either needs more than one frame or the body does not fit the windows."""
        size = len(body)
        max_frame = self._max_frame
        if (len(block) > max_frame or size > max_frame
                or size > self.outbound_flow_control_window or size > self._stream_window):
            return False
        machine = self.state_machine
        if machine.state is not ConnectionState.CLIENT_OPEN:  # (where both inputs lead)
            machine.process_input(ConnectionInputs.SEND_HEADERS)
            machine.process_input(ConnectionInputs.SEND_DATA)
        if stream_id <= self.highest_outbound_stream_id or not stream_id & 1:
            raise h2.exceptions.StreamIDTooLowError(stream_id, self.highest_outbound_stream_id)
        self.highest_outbound_stream_id = stream_id
        self.outbound_flow_control_window -= size
        self._answers[stream_id] = _LIGHT
        sid = stream_id.to_bytes(4, "big")
        self._append(b"".join((
            len(block).to_bytes(3, "big"), b"\x01\x04", sid, block,  # HEADERS, END_HEADERS
            size.to_bytes(3, "big"), b"\x00\x01", sid, body)))  # DATA, END_STREAM
        return True

    def data_to_send(self, amount: int | None = None) -> bytes:
        """h2's bytes and the hand-built frames, in the order they were made."""
        out = self._output
        if not out:
            return super().data_to_send(amount)
        out += super().data_to_send()
        if amount is None:
            data = bytes(out)
            out.clear()
        else:
            data = bytes(out[:amount])
            del out[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        super().clear_outbound_data_buffer()
        self._output.clear()

    def _receive_goaway_frame(self, frame):
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


# --- the check at import ---------------------------------------------------------------------

# :method POST, :scheme https, :path / (static table), :authority "localhost" (a literal).
_BLOCK = b"\x83\x87\x84\x01\x09localhost"
_SIGNATURES = {"_begin_new_stream": ["self", "stream_id", "allowed_ids"],
               "_receive_goaway_frame": ["self", "frame"]}
_EVENTS = (h2.events.RequestReceived, h2.events.ResponseReceived, h2.events.DataReceived,
           h2.events.StreamEnded, h2.events.PingReceived, h2.events.ConnectionTerminated,
           Answered, Body)


class _Mismatch(Exception):
    pass


@contextlib.contextmanager
def _relying_on(internal: str):
    """Name `internal` in whatever goes wrong inside."""
    try:
        yield
    except Exception as exc:
        raise _Mismatch(f"{internal}: {exc if isinstance(exc, _Mismatch) else repr(exc)}") from exc


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise _Mismatch(what)


def _events(conn, data: bytes) -> list[tuple]:
    return [(type(event).__name__, getattr(event, "stream_id", None))
            for event in conn.receive_data(data) if isinstance(event, _EVENTS)]


def _self_check() -> None:
    """Requests, a late answer to a forgotten stream and answers after a GOAWAY, between a
    `ClientH2` and h2's own server: what each internal named above must still do."""
    for name, parameters in _SIGNATURES.items():
        with _relying_on(f"H2Connection.{name}"):
            method = getattr(h2.connection.H2Connection, name, None)
            _expect(callable(method), "missing")
            _expect(list(inspect.signature(method).parameters) == parameters,
                    f"no longer takes {parameters}")
    with _relying_on("H2Connection.open_outbound_streams"):
        _expect(isinstance(getattr(h2.connection.H2Connection, "open_outbound_streams", None),
                           property), "no longer a property")
    with _relying_on("the stand-in encoder and decoder"):
        client = ClientH2({}, 1 << 20)
        server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        client.initiate_connection()
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        server.receive_data(client.data_to_send())
    with _relying_on("H2Connection._closed_streams"):
        _expect(hasattr(client, "_closed_streams"), "missing")
        _expect(isinstance(getattr(h2.connection.H2Connection, "MAX_CLOSED_STREAMS", None), int),
                "MAX_CLOSED_STREAMS missing")

    # A PING h2 makes before the hand-built stream 1, and stream 3 through h2's public path:
    # the server must see them in that order, with the headers and bodies as sent.
    with _relying_on("_begin_new_stream, _data_to_send and the state machines' inputs "
                     "(send_request)"):
        client.ping(b"h2-check")
        _expect(client.send_request(1, _BLOCK, b"{}"), "a small request refused")
        client.send_headers(3, ((b"", _BLOCK),))
        client.send_data(3, b"{}", end_stream=True)
        client.in_flight.update({1: None, 3: None})
        received = server.receive_data(client.data_to_send())
        seen = [(type(e).__name__, getattr(e, "stream_id", None)) for e in received
                if isinstance(e, _EVENTS)]
        _expect(seen == [("PingReceived", None), ("RequestReceived", 1), ("DataReceived", 1),
                         ("StreamEnded", 1), ("RequestReceived", 3), ("DataReceived", 3),
                         ("StreamEnded", 3)], f"the server saw {seen}")
        headers = [e.headers for e in received if isinstance(e, h2.events.RequestReceived)]
        _expect(headers == [[(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/"),
                             (b":authority", b"localhost")]] * 2, f"the server read {headers}")

    with _relying_on("H2Connection.open_outbound_streams (the server allows 100 streams)"):
        client.in_flight.update((sid, None) for sid in range(5, 203, 2))
        try:
            client.send_headers(7, ((b"", _BLOCK),))
        except h2.exceptions.TooManyStreamsError:
            pass
        else:
            raise _Mismatch("h2 no longer counts open streams with it")
        for sid in range(5, 203, 2):
            del client.in_flight[sid]

    # The answer on stream 1 read here, h2's PING before it and the SETTINGS after it read by
    # h2, in the order they came; the window its body used given back by hand-built frames
    # (here at 10,000 bytes instead of half the receive window) that the peer's h2 accepts.
    with _relying_on("the stand-in decoder, state_machine and incoming_buffer (receive_data)"):
        ack_at, client._ack_at = client._ack_at, 10000
        server.ping(b"h2-check")
        server.send_headers(1, [(b":status", b"200")])
        server.send_data(1, b"x" * 16000)
        server.send_data(1, b"{}", end_stream=True)
        server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 50})
        received = client.receive_data(server.data_to_send())
        client._ack_at = ack_at
        received = [e for e in received if not isinstance(e, h2.events.PingAckReceived)]
        seen = [(type(e).__name__, getattr(e, "stream_id", None)) for e in received]
        _expect(seen == [("PingReceived", None), ("Answered", 1), ("Body", 1), ("Body", 1),
                         ("RemoteSettingsChanged", None)], f"the client saw {seen}")
        _expect(received[1].headers == [(b":status", b"200")] and not received[1].ended
                and received[2].data == b"x" * 16000 and not received[2].ended
                and received[3].data == b"{}" and received[3].ended, "the answer misread")
        _expect(client.remote_settings.max_concurrent_streams == 50, "SETTINGS lost")
        out, updates = client.data_to_send(), []
        view = memoryview(out)
        while view:
            frame, length = Frame.parse_frame_header(view[:9])
            frame.parse_body(view[9:9 + length])
            if isinstance(frame, WindowUpdateFrame):
                updates.append((frame.stream_id, frame.window_increment))
            view = view[9 + length:]
        _expect(updates == [(1, 16000), (0, 16002)], f"windows given back: {updates}")
        server.receive_data(out)
        client.forget(1)
        del client.in_flight[1]

    # Stream 5 reset by this side (a timeout) and forgotten: the answer the peer sent before it
    # saw the RST_STREAM is a stream error, not a connection error that would fail every stream.
    with _relying_on("H2Connection._closed_streams (a late answer to a forgotten stream)"):
        _expect(client.send_request(5, _BLOCK, b"{}"), "a small request refused")
        client.reset_stream(5, ErrorCodes.CANCEL)
        client.forget(5)
        late = HeadersFrame(5, b"\x88", flags=("END_HEADERS", "END_STREAM"))  # :status 200
        client.receive_data(late.serialize())
        server.receive_data(client.data_to_send())

    with _relying_on("H2Connection._receive_goaway_frame (streams below last_stream_id finish)"):
        server.send_headers(3, [(b":status", b"200")], end_stream=True)
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = 3
        seen = _events(client, goaway.serialize() + server.data_to_send())
        _expect(seen == [("ConnectionTerminated", None), ("Answered", 3)],
                f"after GOAWAY the client saw {seen}")


def _check_at_import() -> None:
    try:
        _self_check()
    except _Mismatch as exc:
        raise ImportError(
            f"owlmetry.h2client relies on internals of h2 that h2 {h2.__version__} no longer has "
            f"as expected: {exc}. See owlmetry/h2client/h2_seam.py, or install the h2 version "
            "that setup.py pins.") from exc


_check_at_import()
