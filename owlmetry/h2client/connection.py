"""One HTTP/2 connection to a host: h2's state machine (`h2_seam.ClientH2`) driven by a thin
asyncio.Protocol.

Owns the socket, stream ids, the peer's live SETTINGS_MAX_CONCURRENT_STREAMS, flow control,
write batching (one transport.write per event-loop tick), GOAWAY bookkeeping, PING, and the
request's header block (`:authority` and the authorization hook's current value added to the
provider's pre-encoded fields). It puts a pool's `Exchange` on a stream and completes the
exchange's future with the exchange itself (answered), a `Failure`, or None (its deadline
passed before it got a stream). Must not retry, choose between connections, or interpret
statuses or bodies.
"""

import asyncio
import logging
import ssl
from collections import deque

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from . import hpack_encoder
from .exchange import Authorization, Failure
from .h2_seam import Answered, Body, ClientH2, Reset

log = logging.getLogger(__name__)

# Windows for what the peer sends us (answers); large so the peer never waits for our acks.
RECEIVE_WINDOW = 1 << 24
LAST_STREAM_ID = (1 << 31) - 1


def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificate verification stays on; `ca_file` adds a CA (a test or mock server)."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    ctx.set_alpn_protocols(["h2"])
    return ctx


class Connection(asyncio.Protocol):
    """A pool hands exchanges to `submit` while `has_room()`; `on_change` tells it when that
    flips.

    `ready` resolves True at the peer's first SETTINGS, False if the socket closes before.

    An exchange ("pending") carries `fut`, `request`, `deadline`, and gets `status`, `headers`,
    `chunks` and the `generation` of the authorization it went out with. `label` names the
    provider in log lines; `unread_headers` are answer headers the provider never reads (APNs'
    `apns-id`, the echo of the request's own), which the HPACK decoder steps over.
    """

    def __init__(self, host: str, port: int, authorization: Authorization, max_streams: int,
                 on_change, on_lost, label: str = "h2",
                 unread_headers: frozenset[bytes] = frozenset()):
        self.host = host
        self.label = label
        self._auth = authorization
        self._cap = max_streams
        self._on_change = on_change
        self._on_lost = on_lost
        self._authority = hpack_encoder.authority_field(host, port)
        self._auth_generation = -1
        self._auth_field = b""
        self.in_flight: dict = {}
        self._h2 = ClientH2(self.in_flight, RECEIVE_WINDOW, unread_headers)
        self._blocked: dict[int, bytes] = {}  # big bodies sent in part, waiting for window
        self._parked: deque = deque()  # requests that wait for window before opening a stream
        self._next_stream_id = 1
        self._transport = None
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.ready = self._loop.create_future()
        self.closed = self._loop.create_future()
        self.limit = 0
        self.usable = False
        self.going_away = False
        self.ping_deadline = None
        self._vetted = True  # just proved alive (SETTINGS) or answered a PING: no check needed
        self.last_activity = self._loop.time()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            transport.abort()
            return
        h2c = self._h2
        h2c.initiate_connection()
        h2c.increment_flow_control_window(RECEIVE_WINDOW - 65535)
        self._prefix = hpack_encoder.TABLE_SIZE_ZERO
        transport.write(h2c.data_to_send())

    def data_received(self, data):
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("%s %s: protocol error, dropping connection: %s", self.label, self.host,
                        exc)
            self._flush()  # h2's GOAWAY
            self._transport.close()
            return
        self.last_activity = self._loop.time()
        freed = False
        in_flight = self.in_flight
        for event in events:
            kind = event.__class__
            if kind is Answered:  # the answers h2_seam reads itself: nearly every event
                pending = in_flight.get(event.stream_id)
                if pending is not None:
                    self._answered(pending, event.headers)
                if event.ended:
                    freed |= self._finish(event.stream_id)
            elif kind is Body:
                pending = in_flight.get(event.stream_id)
                if pending is not None:
                    pending.chunks.append(event.data)
                if event.ended:
                    freed |= self._finish(event.stream_id)
            elif kind is h2.events.ResponseReceived:
                pending = in_flight.get(event.stream_id)
                if pending is not None and not pending.status:  # (not trailers after an answer)
                    self._answered(pending, event.headers)
            elif kind is h2.events.StreamEnded:
                freed |= self._finish(event.stream_id)
            elif kind is h2.events.DataReceived:
                pending = in_flight.get(event.stream_id)
                if pending is not None:
                    pending.chunks.append(event.data)
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is Reset or kind is h2.events.StreamReset:
                failure = (Failure.REFUSED if event.error_code == ErrorCodes.REFUSED_STREAM
                           else Failure.RESET)
                freed |= self._fail(event.stream_id, failure, reset=False)
            elif kind is h2.events.WindowUpdated:
                if self._blocked:
                    self._resume_blocked()
                if self._parked:
                    self._unpark()
            elif kind is h2.events.RemoteSettingsChanged:
                self._settings_changed()
                freed = True
            elif kind is h2.events.ConnectionTerminated:
                self._goaway(event)
                freed = True
            elif kind is h2.events.PingAckReceived:
                self.ping_deadline = None
                self._vetted = True
                self._update_usable()
                freed = True
        self._flush()
        if self.going_away and not in_flight:
            self._transport.close()
        if freed:
            self._on_change()

    @staticmethod
    def _answered(pending, headers) -> None:
        pending.headers = headers
        for name, value in headers:
            if name == b":status":  # the first field, as HTTP/2 requires
                pending.status = int(value)
                break

    def connection_lost(self, exc):
        was_usable = self.usable
        self.usable = False
        self.going_away = True
        for stream_id in list(self.in_flight):
            self._fail(stream_id, Failure.LOST, reset=False)
        self._release_parked(Failure.REFUSED)
        if not self.ready.done():
            self.ready.set_result(False)
        if was_usable or exc is not None:
            log.info("%s %s: connection lost (%s)", self.label, self.host, exc or "closed")
        self.closed.set_result(None)
        self._on_lost(self)

    # --- pool side ---------------------------------------------------------------------------

    def has_room(self) -> bool:
        return self.usable and len(self.in_flight) + len(self._parked) < self.limit

    def idle(self) -> bool:
        return not self.in_flight and not self._parked

    def submit(self, pending) -> None:
        """Open a stream for `pending` now, or as soon as the connection window lets its body
        go out whole: HEADERS without the DATA would only hold a stream open at the peer."""
        pending.conn = self
        if self._parked or not self._open_stream(pending):
            if pending.again:
                # Sent again: ahead of the requests waiting for window too, or it waited behind
                # hundreds of a fan-out's first sends on every try (benchmarks/RESULTS.md,
                # "hostile APNs": the peer's 64 KB connection window holds ~250 bodies).
                self._parked.appendleft(pending)
            else:
                self._parked.append(pending)
        if self.going_away:
            self._release_parked(Failure.REFUSED)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _open_stream(self, pending) -> bool:
        request = pending.request
        size = len(request.body)
        h2c = self._h2
        if h2c.outbound_flow_control_window < size <= h2c.remote_settings.initial_window_size:
            return False
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        generation, value = self._auth.current()
        if generation != self._auth_generation:
            self._auth_generation = generation
            self._auth_field = hpack_encoder.authorization_field(value)
        pending.generation = generation
        self._vetted = False
        block = b"".join((self._prefix, request.method, request.path, self._authority,
                          self._auth_field, request.fields))
        self._prefix = b""
        try:
            if not h2c.send_request(stream_id, block, request.body):
                h2c.send_headers(stream_id, ((b"", block),))
                rest = self._send_body(stream_id, request.body)
                if rest is not None:
                    self._blocked[stream_id] = rest
        except h2.exceptions.H2Error as exc:
            # h2 disagrees with what this connection believed about its own state: trust it no
            # more. Nothing of this request reached the socket (abort drops the unsent buffer).
            log.error("%s %s: h2 refused a new stream, dropping connection: %r", self.label,
                      self.host, exc)
            self.going_away = True
            self.usable = False
            self._transport.abort()
            pending.fut.set_result(Failure.REFUSED)
            return True
        self.in_flight[stream_id] = pending
        if stream_id >= LAST_STREAM_ID - 2:
            self.going_away = True  # stream ids are spent: finish these, then reconnect
            self.usable = False
        return True

    def _unpark(self) -> None:
        parked = self._parked
        # The peer's limit as of the bytes read so far, not `self.limit`: a SETTINGS later in
        # the same read is acknowledged already, ahead of any stream opened now.
        limit = min(self._h2.remote_settings.max_concurrent_streams, self._cap)
        while parked and not self.going_away and len(self.in_flight) < limit:
            if parked[0].fut.done() or self._open_stream(parked[0]):
                parked.popleft()
            else:
                return
        # Stream ids ran out meanwhile, or the peer's stream limit fell under these: they were
        # never sent, so the pool sends them again where there is room.
        self._release_parked(Failure.REFUSED)

    def _release_parked(self, failure: Failure) -> None:
        while self._parked:
            pending = self._parked.popleft()
            if not pending.fut.done():
                pending.fut.set_result(failure)

    def expire(self, now: float) -> None:
        """Time out streams past their deadline, and the connection if a PING went unanswered."""
        if self.ping_deadline is not None and now >= self.ping_deadline:
            log.warning("%s %s: PING unanswered, dropping connection", self.label, self.host)
            self._transport.abort()
            return
        late = [sid for sid, pending in self.in_flight.items() if pending.deadline <= now]
        for stream_id in late:
            self._fail(stream_id, Failure.TIMEOUT, reset=True)
        for pending in self._parked:
            if pending.deadline <= now and not pending.fut.done():
                pending.fut.set_result(None)  # like a request still queued in the pool: never sent
                late.append(pending)
        if late:
            self._flush()
            self._on_change()

    def needs_ping(self, now: float, idle_s: float) -> bool:
        return self.idle() and not self._vetted and now - self.last_activity >= idle_s

    def ping(self, deadline: float) -> None:
        """Check an idle connection before it is trusted again; no streams until the answer."""
        self.ping_deadline = deadline
        self.usable = False
        self._h2.ping(b"owlping!")
        self._flush()

    def close(self) -> None:
        """Fail what is in flight with CLOSED and close the socket; `closed` resolves after."""
        self.usable = False
        self.going_away = True
        for stream_id in list(self.in_flight):
            self._fail(stream_id, Failure.CLOSED, reset=False)
        self._release_parked(Failure.CLOSED)
        if self._transport is not None and not self._transport.is_closing():
            self._h2.close_connection()
            self._flush()
            self._transport.close()

    # --- internals ---------------------------------------------------------------------------

    def _flush(self):
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def _send_body(self, stream_id: int, body: bytes):
        """Send as much of `body` as the windows allow; return what is left, or None."""
        h2c = self._h2
        while True:
            n = min(len(body), h2c.local_flow_control_window(stream_id), h2c.max_outbound_frame_size)
            if n == len(body):
                h2c.send_data(stream_id, body, end_stream=True)
                return None
            if n <= 0:
                return body
            h2c.send_data(stream_id, body[:n])
            body = body[n:]

    def _resume_blocked(self):
        for stream_id in list(self._blocked):
            rest = self._send_body(stream_id, self._blocked.pop(stream_id))
            if rest is not None:
                self._blocked[stream_id] = rest
                break  # first come, first served: later bodies wait for the same window

    def _finish(self, stream_id: int) -> bool:
        # A peer may answer before reading the whole body (APNs' 413): stop sending the rest.
        reset = ErrorCodes.NO_ERROR if stream_id in self._blocked else None
        return self._end(stream_id, None, reset)

    def _fail(self, stream_id: int, failure: Failure, reset: bool) -> bool:
        return self._end(stream_id, failure, ErrorCodes.CANCEL if reset else None)

    def _end(self, stream_id: int, failure: Failure | None, reset: ErrorCodes | None) -> bool:
        """Forget a stream; complete its exchange with `failure`, or with itself when answered."""
        pending = self.in_flight.pop(stream_id, None)
        self._blocked.pop(stream_id, None)
        if reset is not None and self._transport is not None and not self._transport.is_closing():
            self._h2.reset_stream(stream_id, reset)
        self._h2.forget(stream_id)
        if pending is None:
            return False
        if not pending.fut.done():
            pending.fut.set_result(pending if failure is None else failure)
        return True

    def _settings_changed(self):
        limit = min(self._h2.remote_settings.max_concurrent_streams, self._cap)
        if limit != self.limit and self.ready.done():
            log.debug("%s %s: max concurrent streams %d -> %d", self.label, self.host,
                      self.limit, limit)
        self.limit = limit
        if not self.ready.done():
            self.ready.set_result(True)
        # Requests waiting for window were let in under the old limit; opened under a lower
        # one, they would be streams the peer never allowed (a connection error at the peer).
        parked = self._parked
        excess = len(self.in_flight) + len(parked) - limit
        while excess > 0 and parked:
            pending = parked.pop()
            if not pending.fut.done():
                pending.fut.set_result(Failure.REFUSED)
            excess -= 1
        self._update_usable()

    def _update_usable(self):
        self.usable = (self.ready.done() and self.ready.result() and not self.going_away
                       and self.ping_deadline is None)

    def _goaway(self, event):
        self.going_away = True
        self.usable = False
        log.info("%s %s: GOAWAY last_stream_id=%d error=%s %s", self.label, self.host,
                 event.last_stream_id, event.error_code, (event.additional_data or b"")[:200])
        for stream_id in [sid for sid in self.in_flight if sid > event.last_stream_id]:
            self._fail(stream_id, Failure.REFUSED, reset=False)
        self._release_parked(Failure.REFUSED)
