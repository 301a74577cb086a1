"""A minimal HTTP/2 client for the FCM tests: one TLS connection, concurrent requests, and what
happened to each (an answer, a refused stream, a lost connection). Test-only: the FCM client
proper will send over the shared HTTP/2 core; this one only has to reach the mock.

It waits for room under the server's SETTINGS_MAX_CONCURRENT_STREAMS, as any client must, and
lets the streams a GOAWAY still promises finish (`_Client`, the same one-method change as
owlmetry/apns/h2_seam.py's, which checks at import that h2 still works that way).
"""

import asyncio
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class _Client(h2.connection.H2Connection):
    def _receive_goaway_frame(self, frame):
        # h2 closes its whole state machine on GOAWAY, refusing the answers still to come.
        event = h2.events.ConnectionTerminated()
        event.error_code, event.last_stream_id = frame.error_code, frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class Refused(Exception):
    """The stream was above a GOAWAY's last stream id, or reset with REFUSED_STREAM."""


@dataclass
class Response:
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class H2Client:
    def __init__(self, reader, writer):
        self._reader, self._writer = reader, writer
        self._h2 = _Client(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self._pending: dict[int, tuple[Response, asyncio.Future]] = {}
        self._room = asyncio.Event()
        self.settings_received = asyncio.Event()
        self.going_away = False
        self._h2.initiate_connection()
        self._flush()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, ca_file: str) -> "H2Client":
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        client = cls(reader, writer)
        await client.settings_received.wait()
        return client

    @property
    def max_streams(self) -> int:
        return self._h2.remote_settings.max_concurrent_streams

    async def request(self, path: str, body: bytes, headers: dict[str, str] | None = None,
                      method: str = "POST") -> Response:
        while self._h2.open_outbound_streams >= self.max_streams and not self.going_away:
            self._room.clear()
            await self._room.wait()
        if self.going_away:
            raise Refused(path)
        stream_id = self._h2.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", b"127.0.0.1"), (b":path", path.encode())]
        fields += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        self._h2.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self._h2.send_data(stream_id, body, end_stream=True)
        response, done = Response(), asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (response, done)
        self._flush()
        return await done

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
        for _, done in self._pending.values():
            if not done.done():
                done.set_exception(ConnectionError("closed"))

    def _flush(self):
        data = self._h2.data_to_send()
        if data:
            self._writer.write(data)

    async def _read(self):
        try:
            while data := await self._reader.read(65536):
                for event in self._h2.receive_data(data):
                    self._event(event)
                self._flush()
        except (ConnectionError, OSError, h2.exceptions.ProtocolError):
            pass
        self.going_away = True
        self._room.set()
        for _, done in self._pending.values():
            if not done.done():
                done.set_exception(ConnectionError("connection lost"))

    def _event(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received.set()
            self._room.set()
        elif isinstance(event, h2.events.ResponseReceived):
            response = self._pending[event.stream_id][0]
            response.headers = dict(event.headers)
            response.status = int(response.headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            self._pending[event.stream_id][0].body += event.data
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            response, done = self._pending.pop(event.stream_id)
            done.set_result(response)
            self._room.set()
        elif isinstance(event, h2.events.StreamReset):
            entry = self._pending.pop(event.stream_id, None)
            if entry is not None:
                entry[1].set_exception(Refused(event.stream_id) if event.error_code == 7
                                       else ConnectionError(f"reset {event.error_code}"))
            self._room.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.going_away = True
            self._room.set()
            for stream_id in [s for s in self._pending if s > event.last_stream_id]:
                self._pending.pop(stream_id)[1].set_exception(Refused(stream_id))
