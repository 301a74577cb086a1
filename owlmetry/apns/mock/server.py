"""`MockAPNs`: the mock's h2 server over TLS, which applies Apple's rules (`rules.py`), the
faults it is told to inject (`faults.py`) and counts what happens (`stats.py`).

Owns sockets, streams, answers, and the connection-level faults: GOAWAY after N streams,
connections reset, latency, a stream limit that rises after the first authenticated request,
stream limits changed at runtime (by the test, or by a schedule of request counts).
"""

import asyncio
import functools
import json
import random
import socket
import ssl
import struct
import uuid

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import GoAwayFrame

from . import faults, rules
from .faults import MockBehaviour
from .rules import Verdict
from .stats import MockStats, ReceivedRequest

# The client's requests are validated in full; the mock's own answers, a few fixed shapes, are
# not re-validated by h2 each time (a cost of the benchmark's mock, heavier on error answers).
_H2_CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                       validate_outbound_headers=False,
                                       normalize_outbound_headers=False)
_JSON = (b"content-type", b"application/json")


@functools.lru_cache(maxsize=64)
def _status_field(status: int) -> tuple[bytes, bytes]:
    return (b":status", str(status).encode())


@functools.lru_cache(maxsize=256)
def _error_body(reason: str, extra: tuple) -> bytes:
    """Apple's error body; the same few reasons (and a dead token's timestamp, per ms) repeat."""
    return json.dumps({"reason": reason, **dict(extra)}).encode()


class MockAPNs:
    def __init__(self, cert_file: str, key_file: str, auth_key_pem: str | bytes | None = None,
                 key_id: str | None = None, team_id: str | None = None,
                 behaviour: MockBehaviour | None = None):
        self.behaviour = behaviour or MockBehaviour()
        self.stats = MockStats()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(cert_file, key_file)
        self._ssl.set_alpn_protocols(["h2"])
        self._provider_tokens = rules.ProviderTokenRule(
            auth_key_pem, key_id, team_id, lambda bearer: self.stats.provider_tokens.add(bearer))
        self._random = random.Random(self.behaviour.seed)  # the FCM mock's draws
        self._requests_total = 0  # since start, for `max_streams_schedule`
        self._schedule_done = 0  # steps of the schedule applied
        self._held: dict[str, list] = {}  # token -> (connection, stream id) not yet judged
        self._connections: set[_MockConnection] = set()
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._server: asyncio.Server | None = None
        self.port = 0
        self.received: list[ReceivedRequest] | None = None  # see record()
        self.connections_made = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _MockConnection(self), host, port,
                                                ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        await asyncio.gather(*(conn.closed for conn in list(self._connections)))
        if self._server is not None:
            await self._server.wait_closed()

    async def requests_seen(self, n: int) -> None:
        """Return once `n` requests (all tokens, since the last reset) have been processed."""
        if sum(self.stats.requests.values()) < n:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((n, waiter))
            await waiter

    def _wake_waiters(self) -> None:
        if self._waiters:
            seen = sum(self.stats.requests.values())
            for n, waiter in [w for w in self._waiters if w[0] <= seen]:
                self._waiters.remove((n, waiter))
                if not waiter.done():
                    waiter.set_result(None)

    def record(self) -> list[ReceivedRequest]:
        """From now on, keep every complete request (its headers and payload, one per stream,
        in the order judged) in the list returned. Off until asked: a benchmark's millions of
        requests are not kept."""
        self.received = []
        return self.received

    def reset_stats(self) -> None:
        self.stats = MockStats(connections_open=self.stats.connections_open)

    def expire_provider_tokens(self) -> None:
        """Answer ExpiredProviderToken to every provider token seen so far."""
        self._provider_tokens.expire_all()

    def set_max_streams(self, n: int) -> None:
        """Change SETTINGS_MAX_CONCURRENT_STREAMS on every open connection, now (one still
        held to `initial_max_streams` gets `n` at its first authenticated request)."""
        self.behaviour.max_streams = n
        self.stats.max_streams_changes += 1
        for conn in self._connections:
            if conn.authenticated or not self.behaviour.initial_max_streams:
                conn.send_max_streams(n)

    def held(self) -> list[str]:
        """The tokens with a request held unjudged now (see `MockBehaviour.hold_tokens`)."""
        return list(self._held)

    def release(self, token: str) -> None:
        """Stop holding `token`'s requests: the held ones are judged and answered now."""
        self.behaviour.hold_tokens.pop(token, None)
        for conn, stream_id in self._held.pop(token, []):
            conn.judge_held(stream_id)

    def silence_connections(self) -> None:
        """Make every open connection a black hole: it reads and never answers (a dead NAT)."""
        for conn in self._connections:
            conn.silent = True

    def drop_connections(self) -> None:
        """Close every socket abruptly; answers not yet sent are lost."""
        for conn in list(self._connections):
            conn.drop()

    def judge(self, headers: dict, body: bytes) -> Verdict:
        """The verdict on a complete request: Apple's rules, then the faults; counted."""
        verdict = rules.check_address(headers)
        if not verdict.accepted:
            return verdict
        token = rules.device_token(headers)
        n = self.stats.requests[token] = self.stats.requests[token] + 1
        self._requests_total += 1
        schedule = self.behaviour.max_streams_schedule
        while (self._schedule_done < len(schedule)
               and schedule[self._schedule_done][0] <= self._requests_total):
            self.set_max_streams(schedule[self._schedule_done][1])
            self._schedule_done += 1
        self._wake_waiters()
        verdict = self._provider_tokens.check(headers.get(b"authorization"))
        if not verdict.accepted:
            return verdict
        topic = headers.get(b"apns-topic")
        if topic:
            self.stats.topics[topic.decode()] += 1
        verdict = rules.check_request(headers, body, self.behaviour.topic)
        if not verdict.accepted:
            return verdict
        verdict = faults.apply(self.behaviour, token, verdict, n)
        if verdict.accepted:
            self.stats.delivered[token] += 1
            self.stats.payloads[token] = verdict.payload
        return verdict


class _Stream:
    __slots__ = ("accepted", "body", "headers", "token")

    def __init__(self, headers: dict):
        self.headers = headers
        self.body = bytearray()
        self.token = rules.device_token(headers)
        self.accepted = False  # judged, and answered 200 (once the answer goes out)


class _MockConnection(asyncio.Protocol):
    def __init__(self, mock: MockAPNs):
        self._mock = mock
        self._h2 = h2.connection.H2Connection(_H2_CONFIG)
        self._streams: dict[int, _Stream] = {}  # open: request seen, answer not yet sent
        self._timers: dict[int, asyncio.TimerHandle] = {}  # answers delayed by latency
        self._opened = 0
        self._requests = 0
        self._goaway_last: int | None = None
        # SETTINGS frames sent and not yet acknowledged, and a stream limit waiting for their
        # ACKs: h2 applies every pending local setting at the first ACK, whichever frame it
        # acknowledges, so a limit sent before the client acknowledged our first SETTINGS
        # would bind streams the client opened, rightly, before it read the new one.
        self._settings_unacked = 0
        self._next_max_streams: int | None = None
        self._judged: list[str] = []  # tokens of requests judged here (with `drop_rst` only)
        self._transport = None
        self.authenticated = False
        self.silent = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        # The settings as they are once the TLS handshake is done (`set_max_streams` may have
        # run during it, and only reaches the connections it knows).
        b = self._mock.behaviour
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: b.initial_max_streams or b.max_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: b.initial_window_size,
        })
        self._transport = transport
        self._mock._connections.add(self)
        self._mock.stats.connections_opened += 1
        self._mock.connections_made += 1
        self.number = self._mock.connections_made  # not the stats': reset_stats() clears those
        self._mock.stats.connections_open += 1
        self._mock.stats.event(f"connection {self.number} opened")
        self._h2.initiate_connection()
        self._settings_unacked = 1
        self._flush()

    def connection_lost(self, exc):
        for timer in self._timers.values():
            timer.cancel()
        self._mock._connections.discard(self)
        self._mock.stats.connections_open -= 1
        self._mock.stats.event(f"connection {self.number} closed")
        self.closed.set_result(None)

    def abort(self):
        self._transport.abort()

    def drop(self, rst: bool = False):
        """Close the socket abruptly, or with `rst` reset it (TCP RST, as a crashed APNs host
        or a middlebox does, which also discards answers written but not yet delivered).
        Streams judged and accepted whose answers were not written are counted lost; with
        `rst`, every request judged on this connection is counted as possibly unanswered."""
        stats = self._mock.stats
        stats.drops += 1
        stats.event(f"connection {self.number} reset" if rst else f"connection {self.number} dropped")
        for stream in self._streams.values():
            if stream.token and stream.accepted:  # judged and accepted, answer unsent
                stats.lost_answers.append(stream.token)
        if rst:
            stats.reset_judged.extend(self._judged)
            sock = self._transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()

    def send_max_streams(self, n: int):
        if self._settings_unacked:
            self._next_max_streams = n  # sent once the frames out are acknowledged
            return
        self._settings_unacked += 1
        self._mock.stats.event(f"connection {self.number} max streams {n} sent")
        self._h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: n})
        self._flush()

    def _settings_acknowledged(self):
        self._settings_unacked -= 1
        self._mock.stats.event(f"connection {self.number} settings acknowledged")
        if not self._settings_unacked and self._next_max_streams is not None:
            n, self._next_max_streams = self._next_max_streams, None
            self.send_max_streams(n)

    def data_received(self, data):
        if self.silent:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._mock.stats.protocol_errors += 1
            self._mock.stats.protocol_error_reasons[f"{type(exc).__name__}: {exc}"[:200]] += 1
            self._flush()
            self._transport.close()
            return
        answers = []
        for event in events:
            if self._transport.is_closing():
                return  # dropped: what is left of this read was never received
            if isinstance(event, h2.events.RequestReceived):
                self._opened_stream(event)
            elif isinstance(event, h2.events.DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None and stream.body is not None:
                    stream.body += event.data
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._request_complete(event.stream_id, answers)
            elif isinstance(event, h2.events.StreamReset):
                self._streams.pop(event.stream_id, None)
            elif isinstance(event, h2.events.PingReceived):
                self._mock.stats.pings += 1
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self._settings_acknowledged()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._transport.close()
        # Answer after the whole read, so streams that arrived together count as open together.
        stats = self._mock.stats
        stats.max_streams_open = max(stats.max_streams_open, len(self._streams))
        for answer in answers:
            self._answer(*answer)
        self._flush()

    def _opened_stream(self, event):
        stream_id = event.stream_id
        mock = self._mock
        if self._goaway_last is not None and stream_id > self._goaway_last:
            mock.stats.refused_streams += 1
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self._streams[stream_id] = _Stream(dict(event.headers))
        self._opened += 1
        goaway_after = mock.behaviour.goaway_after
        if goaway_after and self._opened == goaway_after:
            self._goaway_last = stream_id
            mock.stats.goaways_sent += 1
            mock.stats.event(f"connection {self.number} GOAWAY after stream {stream_id}")
            self._flush()
            # Written past h2, whose state machine would refuse to answer the streams this
            # GOAWAY still promises to finish.
            frame = GoAwayFrame(0)
            frame.last_stream_id = stream_id
            frame.additional_data = b'{"reason":"Shutdown"}'
            self._transport.write(frame.serialize())

    def judge_held(self, stream_id: int):
        """Judge and answer a request `MockAPNs.release` let go, if its stream still lives."""
        if stream_id in self._streams and not self._transport.is_closing():
            answers = []
            self._request_complete(stream_id, answers, held=False)
            for answer in answers:
                self._answer(*answer)
            self._flush()

    def _request_complete(self, stream_id: int, answers: list, held: bool = True):
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        mock = self._mock
        hold = mock.behaviour.hold_tokens
        if held and hold and mock.stats.requests[stream.token] >= hold.get(stream.token, 1 << 62):
            mock._held.setdefault(stream.token, []).append((self, stream_id))
            return
        body = bytes(stream.body)
        verdict = mock.judge(stream.headers, body)
        stream.body = None  # judged
        stream.accepted = verdict.accepted
        if mock.received is not None:
            mock.received.append(ReceivedRequest.of(stream.token, stream.headers, body,
                                                    0 if verdict.reset else verdict.status,
                                                    self.number))
        if mock.behaviour.drop_rst:
            self._judged.append(stream.token)
        if verdict.reset:
            mock.stats.resets_sent += 1
            del self._streams[stream_id]
            self._h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        if verdict.status != 403 and not self.authenticated:
            self.authenticated = True
            if mock.behaviour.initial_max_streams:
                self.send_max_streams(mock.behaviour.max_streams)
        self._requests += 1
        b = mock.behaviour
        if b.drop_after and self._requests == b.drop_after and (
                b.max_drops is None or mock.stats.drops < b.max_drops):
            self.drop(b.drop_rst)
            return
        if b.latency_s > 0:
            loop = asyncio.get_running_loop()
            self._timers[stream_id] = loop.call_later(
                b.latency_s, self._answer_later, stream_id, verdict)
        else:
            answers.append((stream_id, verdict))

    def _answer_later(self, stream_id: int, verdict: Verdict):
        del self._timers[stream_id]
        self._answer(stream_id, verdict)
        self._flush()

    def _answer(self, stream_id: int, verdict: Verdict):
        stream = self._streams.pop(stream_id, None)
        if stream is None or self._transport.is_closing():
            return
        stats = self._mock.stats
        stats.responses_by_status[verdict.status] += 1
        n = stats.requests[stream.token]
        stats.answered(verdict.status, n > 1)
        if n > 1 or verdict.status != 200:
            stats.tried(stream.token, n, verdict.status, self.number)
        apns_id = stream.headers.get(b"apns-id") or str(uuid.uuid4()).encode()
        # Never indexed: an id seen once would only push the others out of the client's table.
        headers = [_status_field(verdict.status), NeverIndexedHeaderTuple(b"apns-id", apns_id)]
        if verdict.reason is None:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        else:
            body = _error_body(verdict.reason, tuple((verdict.extra or {}).items()))
            headers.append(_JSON)
            self._h2.send_headers(stream_id, headers)
            self._h2.send_data(stream_id, body, end_stream=True)
        if self._goaway_last is not None and not self._streams:
            self._flush()
            self._transport.close()

    def _flush(self):
        data = self._h2.data_to_send()
        if data and not self._transport.is_closing():
            self._transport.write(data)
