"""The h2 seam: hand-built frames and h2's own leave in the order they were made, and an h2 whose
internals moved makes the import fail loudly."""

import asyncio
from types import SimpleNamespace

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, WindowUpdateFrame

from owlmetry.h2client import Exchange, Failure, Request, h2_seam, hpack_encoder
from owlmetry.h2client.connection import Connection
from owlmetry.h2client.h2_seam import ClientH2

from .conftest import FixedAuthorization

BLOCK = b"\x83\x87\x84\x01\x09localhost"  # POST https / localhost


def frames(data: bytes) -> list[tuple[str, int]]:
    """(frame type, stream id) of every frame in `data`, client preface skipped."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    view, out = memoryview(data.removeprefix(preface)), []
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9:9 + length])
        out.append((type(frame).__name__, frame.stream_id))
        view = view[9 + length:]
    return out


def server() -> h2.connection.H2Connection:
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding=None))
    peer.initiate_connection()
    return peer


def connected_client() -> tuple[ClientH2, h2.connection.H2Connection]:
    client, peer = ClientH2({}, 1 << 20), server()
    client.initiate_connection()
    peer.receive_data(client.data_to_send())
    client.receive_data(peer.data_to_send())
    peer.receive_data(client.data_to_send())
    return client, peer


def test_frames_leave_in_the_order_they_were_made():
    client, peer = connected_client()
    client.ping(b"12345678")  # h2's, before the hand-built request
    assert client.send_request(1, BLOCK, b"{}")
    client.reset_stream(1, ErrorCodes.CANCEL)  # h2's, after it
    client.send_headers(3, ((b"", BLOCK),))  # h2's public path for the next stream
    client.send_data(3, b"{}", end_stream=True)
    assert client.send_request(5, BLOCK, b"{}")
    data = client.data_to_send()
    assert frames(data) == [("PingFrame", 0), ("HeadersFrame", 1), ("DataFrame", 1),
                            ("RstStreamFrame", 1), ("HeadersFrame", 3), ("DataFrame", 3),
                            ("HeadersFrame", 5), ("DataFrame", 5)]
    peer.receive_data(data)  # a peer's h2 takes it as a valid sequence
    assert client.data_to_send() == b""


def test_data_to_send_by_amount_keeps_the_order():
    client, _ = connected_client()
    client.ping(b"12345678")
    assert client.send_request(1, BLOCK, b"{}")
    client.ping(b"87654321")
    whole = b""
    while chunk := client.data_to_send(7):
        whole += chunk
    assert frames(whole) == [("PingFrame", 0), ("HeadersFrame", 1), ("DataFrame", 1),
                             ("PingFrame", 0)]


async def test_a_stream_reset_in_the_tick_it_opened_goes_out_after_its_headers():
    """A request submitted and timed out before the connection's next write: its RST_STREAM
    (made by h2) must follow its HEADERS (hand-built) on the wire."""
    writes = []
    transport = SimpleNamespace(write=writes.append, is_closing=lambda: False,
                                get_extra_info=lambda name: None)
    conn = Connection("localhost", 443, FixedAuthorization(b"Bearer x"), 10,
                      on_change=lambda: None, on_lost=lambda conn: None)
    conn.connection_made(transport)
    peer = server()
    peer.receive_data(b"".join(writes))
    conn.data_received(peer.data_to_send())
    assert conn.usable
    writes.clear()
    loop = asyncio.get_running_loop()
    push = Exchange(Request(hpack_encoder.POST, hpack_encoder.path_field(b"/x"), b"", b"{}"),
                    loop.time())
    push.fut = loop.create_future()
    conn.submit(push)
    conn.expire(loop.time())
    data = b"".join(writes)
    assert [f for f in frames(data) if f[1]] == [("HeadersFrame", 1), ("DataFrame", 1),
                                                 ("RstStreamFrame", 1)]
    events = peer.receive_data(data)
    assert [type(e) for e in events if e.stream_id] == [
        h2.events.RequestReceived, h2.events.DataReceived, h2.events.StreamEnded,
        h2.events.StreamReset]
    assert push.fut.result() is Failure.TIMEOUT


def test_the_import_check_passes_on_the_installed_h2():
    h2_seam._check_at_import()


def test_a_missing_internal_fails_the_import_naming_h2_and_the_internal(monkeypatch):
    monkeypatch.delattr(h2.connection.H2Connection, "_begin_new_stream")
    with pytest.raises(ImportError, match=rf"h2 {h2.__version__}.*_begin_new_stream"):
        h2_seam._check_at_import()


def test_a_changed_signature_fails_the_import(monkeypatch):
    monkeypatch.setattr(h2.connection.H2Connection, "_receive_goaway_frame",
                        lambda self, frame, extra: None)
    with pytest.raises(ImportError, match="_receive_goaway_frame"):
        h2_seam._check_at_import()


def test_an_internal_that_behaves_differently_fails_the_import(monkeypatch):
    # As if h2 no longer looked up how a forgotten stream ended: a late frame for a stream
    # this side reset would now fail the whole connection.
    monkeypatch.setattr(h2.connection.H2Connection, "_stream_closed_by",
                        lambda self, stream_id: None)
    with pytest.raises(ImportError, match=rf"h2 {h2.__version__}"):
        h2_seam._check_at_import()


# --- answers read by the seam itself (receive_data's fast path) -------------------------------

def opened(*stream_ids: int) -> tuple[ClientH2, h2.connection.H2Connection]:
    """A client with requests on `stream_ids` in flight, the peer having read them."""
    client, peer = connected_client()
    for stream_id in stream_ids:
        assert client.send_request(stream_id, BLOCK, b"{}")
        client.in_flight[stream_id] = object()
    peer.receive_data(client.data_to_send())
    return client, peer


def answer_of(events) -> tuple[list, bytes, bool]:
    """(headers, body, ended) of one stream's events, whoever read them."""
    headers, body, ended = None, b"", False
    for e in events:
        if isinstance(e, (h2_seam.Answered, h2.events.ResponseReceived)):
            headers = e.headers
            ended |= bool(getattr(e, "ended", False))
        elif isinstance(e, (h2_seam.Body, h2.events.DataReceived)):
            body += e.data
            ended |= bool(getattr(e, "ended", False))
        elif isinstance(e, h2.events.StreamEnded):
            ended = True
    return headers, body, ended


def test_answers_split_anywhere_across_reads_read_the_same():
    client, peer = opened(1, 3)
    peer.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/json")])
    peer.send_data(1, b'{"name":"a"}', end_stream=True)
    peer.ping(b"abcdefgh")
    peer.send_headers(3, [(b":status", b"404")], end_stream=True)
    wire = peer.data_to_send()
    for cut in range(1, len(wire)):
        client, peer = opened(1, 3)
        events = client.receive_data(wire[:cut]) + client.receive_data(wire[cut:])
        assert answer_of(e for e in events if getattr(e, "stream_id", 0) == 1) == (
            [(b":status", b"200"), (b"content-type", b"application/json")], b'{"name":"a"}', True)
        assert answer_of(e for e in events if getattr(e, "stream_id", 0) == 3) == (
            [(b":status", b"404")], b"", True)
        assert [type(e) for e in events if isinstance(e, h2.events.PingReceived)]


def test_padded_and_prioritised_frames_are_read_without_their_padding():
    client, _ = opened(1)
    block = b"\x88"  # :status 200
    headers = HeadersFrame(1, block, flags=("END_HEADERS", "PADDED", "PRIORITY"))
    headers.pad_length, headers.depends_on, headers.stream_weight = 3, 0, 15
    data = DataFrame(1, b"body", flags=("PADDED", "END_STREAM"))
    data.pad_length = 5
    events = client.receive_data(headers.serialize() + data.serialize())
    assert answer_of(events) == ([(b":status", b"200")], b"body", True)


def test_a_header_block_in_continuation_frames_is_read_whole():
    client, _ = opened(1)
    first = HeadersFrame(1, b"\x88\x40\x01x")  # :status 200, x: (value follows)
    rest = ContinuationFrame(1, b"\x01y", flags=("END_HEADERS",))
    data = DataFrame(1, b"ok", flags=("END_STREAM",))
    events = client.receive_data(first.serialize() + rest.serialize() + data.serialize())
    assert answer_of(events) == ([(b":status", b"200"), (b"x", b"y")], b"ok", True)


def test_an_informational_answer_is_skipped_and_trailers_end_the_stream():
    client, peer = opened(1)
    peer.send_headers(1, [(b":status", b"103"), (b"link", b"</a>")])
    peer.send_headers(1, [(b":status", b"200")])
    peer.send_data(1, b"x")
    peer.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    events = client.receive_data(peer.data_to_send())
    assert [type(e) for e in events] == [h2_seam.Answered, h2_seam.Body, h2_seam.Body]
    assert answer_of(events) == ([(b":status", b"200")], b"x", True)


def test_a_bad_header_block_is_a_connection_error_with_goaway():
    client, peer = opened(1)
    bad = HeadersFrame(1, b"\xff\xff\xff\xff\x7f", flags=("END_HEADERS",))  # index past any table
    with pytest.raises(h2.exceptions.ProtocolError):
        client.receive_data(bad.serialize())
    assert [type(e) for e in peer.receive_data(client.data_to_send())] == [
        h2.events.ConnectionTerminated]


def test_a_late_answer_to_a_stream_no_longer_in_flight_is_h2s_stream_error():
    client, peer = opened(1, 3)
    client.reset_stream(1, ErrorCodes.CANCEL)  # timed out here
    client.forget(1)
    del client.in_flight[1]
    peer.send_headers(1, [(b":status", b"200")], end_stream=True)  # sent before it saw the reset
    peer.send_headers(3, [(b":status", b"200")], end_stream=True)
    events = client.receive_data(peer.data_to_send())
    assert [(type(e), e.stream_id) for e in events] == [(h2_seam.Answered, 3)]
    assert ("RstStreamFrame", 1) in frames(client.data_to_send())


def test_how_streams_ended_is_kept_for_as_many_streams_as_h2_keeps():
    client, peer = opened(1, 3, 5)
    client.MAX_CLOSED_STREAMS = 2
    for stream_id in (1, 3, 5):
        client.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.forget(stream_id)
        del client.in_flight[stream_id]
    assert list(client._closed_streams) == [3, 5]  # the newest
    peer.send_headers(5, [(b":status", b"200")], end_stream=True)  # late: a stream error
    assert client.receive_data(peer.data_to_send()) == []


def test_big_bodies_give_their_windows_back_and_keep_flowing():
    """Far more than the receive window, in answers on streams in flight: the peer is never
    stopped by a window the fast path used and did not give back."""
    window = 1 << 16
    client, peer = ClientH2({}, window), server()
    client.initiate_connection()
    peer.receive_data(client.data_to_send())
    client.receive_data(peer.data_to_send())
    peer.receive_data(client.data_to_send())
    got = 0
    for stream_id in range(1, 41, 2):
        assert client.send_request(stream_id, BLOCK, b"{}")
        client.in_flight[stream_id] = object()
        peer.receive_data(client.data_to_send())
        peer.send_headers(stream_id, [(b":status", b"200")])
        body = b"z" * 50_000
        while body:
            n = min(len(body), peer.local_flow_control_window(stream_id),
                    peer.max_outbound_frame_size)
            assert n > 0, "the peer ran out of window"
            peer.send_data(stream_id, body[:n], end_stream=n == len(body))
            body = body[n:]
            got += sum(len(e.data) for e in client.receive_data(peer.data_to_send())
                       if isinstance(e, h2_seam.Body))
            peer.receive_data(client.data_to_send())
        client.forget(stream_id)
        del client.in_flight[stream_id]
    assert got == 20 * 50_000


def test_a_header_block_of_a_stream_h2_opened_is_h2s_to_read():
    client, peer = connected_client()
    client.send_headers(1, ((b"", BLOCK),))  # a big request's path: an h2 stream
    client.send_data(1, b"{}", end_stream=True)
    client.in_flight[1] = object()
    peer.receive_data(client.data_to_send())
    first = HeadersFrame(1, b"\x88\x40\x01x")
    rest = ContinuationFrame(1, b"\x01y", flags=("END_HEADERS",))
    data = DataFrame(1, b"ok", flags=("END_STREAM",))
    events = client.receive_data(first.serialize() + rest.serialize() + data.serialize())
    assert [type(e) for e in events] == [h2.events.ResponseReceived, h2.events.DataReceived,
                                         h2.events.StreamEnded]
    assert answer_of(events) == ([(b":status", b"200"), (b"x", b"y")], b"ok", True)


def test_the_peers_reset_of_a_request_is_read_and_its_late_frames_are_h2s():
    client, peer = opened(1, 3)
    peer.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    peer.send_headers(3, [(b":status", b"200")], end_stream=True)
    events = client.receive_data(peer.data_to_send())
    assert [(type(e), e.stream_id) for e in events] == [(h2_seam.Reset, 1), (h2_seam.Answered, 3)]
    assert events[0].error_code == ErrorCodes.REFUSED_STREAM
    for stream_id in (1, 3):
        client.forget(stream_id)
        del client.in_flight[stream_id]
    # A WINDOW_UPDATE for the reset stream, then DATA on it: h2 ignores both (a stream error at
    # most), the connection lives on.
    late = WindowUpdateFrame(1)
    late.window_increment = 10
    events = client.receive_data(late.serialize() + DataFrame(1, b"x").serialize())
    assert not [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert client.send_request(5, BLOCK, b"{}")


def test_data_before_headers_on_a_request_is_a_connection_error():
    client, peer = opened(1)
    with pytest.raises(h2.exceptions.ProtocolError):
        client.receive_data(DataFrame(1, b"x", flags=("END_STREAM",)).serialize())
    assert [type(e) for e in peer.receive_data(client.data_to_send())] == [
        h2.events.ConnectionTerminated]
