"""A stand-in for APNs, on `h2` over TLS, for tests and benchmarks, with every fault on demand.

Owns the APNs request rules (POST /3/device/<token>, ES256 provider token checked against the
public key, apns-topic, apns-push-type, priority, collapse id, payload size), the answers with
Apple's reasons, injected faults (GOAWAY after N streams, dropped sockets, RST_STREAM, 429/5xx
per token or by probability, latency, a stream limit that rises after the first authenticated
request, 410/BadDeviceToken tokens, expired provider tokens) and counters that show what was
lost or sent twice. Must not be imported by the client code.

In-process: `mock = MockAPNs(cert, key, auth_key_pem, ...); port = await mock.start();
... mock.stats ...; await mock.stop()`. Out of process: `python -m owlmetry.apns.mock --port P
--cert C --key K --auth-key apns-auth-key.p8 [--stats-port S] [faults...]`; GET /stats and
POST /reset on the stats port (plain HTTP/1.1), like the benchmark harness's Node mock.
"""

import argparse
import asyncio
import json
import random
import re
import signal
import ssl
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import jwt
from cryptography.hazmat.primitives import serialization
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

PUSH_TYPES = frozenset({"alert", "background", "complication", "controls", "fileprovider",
                        "liveactivity", "location", "mdm", "pushtotalk", "voip", "widgets"})
_HEX = re.compile(rb"[0-9a-fA-F]+")


@dataclass
class TokenFault:
    """Answer `status`/`reason` to a device token for its first `times` requests (None: all)."""

    status: int
    reason: str
    times: int | None = None


@dataclass
class MockBehaviour:
    """What the mock does; tests may change it between (not during) phases."""

    max_streams: int = 1000
    initial_max_streams: int | None = None  # until a connection's first authenticated request
    initial_window_size: int = 65535  # per-stream receive window advertised to clients
    latency_s: float = 0.0
    goaway_after: int | None = None  # per connection: GOAWAY after its Nth stream
    drop_after: int | None = None  # per connection: abort the socket at its Nth request
    max_drops: int | None = None
    token_faults: dict[str, TokenFault] = field(default_factory=dict)
    reset_tokens: dict[str, int] = field(default_factory=dict)  # RST_STREAM for first K requests
    error_probability: dict[int, float] = field(default_factory=dict)  # e.g. {503: 0.1}
    unregistered: dict[str, int] = field(default_factory=dict)  # token -> 410 timestamp (ms)
    bad_tokens: set[str] = field(default_factory=set)
    topic: str | None = None  # when set, other topics are TopicDisallowed
    seed: int = 0


_REASONS_FOR_STATUS = {429: "TooManyRequests", 500: "InternalServerError",
                       503: "ServiceUnavailable"}


@dataclass
class MockStats:
    requests: Counter = field(default_factory=Counter)  # device token -> requests processed
    topics: Counter = field(default_factory=Counter)  # apns-topic -> requests
    delivered: Counter = field(default_factory=Counter)  # device token -> 200s (or accepted)
    payloads: dict = field(default_factory=dict)  # device token -> its last accepted payload
    responses_by_status: Counter = field(default_factory=Counter)
    connections_opened: int = 0
    connections_open: int = 0
    max_streams_open: int = 0  # most streams open at once on one connection
    goaways_sent: int = 0
    refused_streams: int = 0
    resets_sent: int = 0
    drops: int = 0
    lost_answers: list = field(default_factory=list)  # tokens accepted, answer lost in a drop
    provider_tokens: set = field(default_factory=set)  # distinct bearer tokens that verified
    pings: int = 0
    protocol_errors: int = 0

    def summary(self) -> dict:
        out = asdict(replace(self, payloads={}))
        del out["payloads"]
        out["requests"] = sum(self.requests.values())
        out["delivered"] = sum(self.delivered.values())
        out["unique_delivered"] = len(self.delivered)
        out["duplicate_delivered"] = out["delivered"] - out["unique_delivered"]
        out["responses_by_status"] = dict(self.responses_by_status)
        out["topics"] = dict(self.topics)
        out["provider_tokens"] = len(self.provider_tokens)
        out["lost_answers"] = len(self.lost_answers)
        return out


class MockAPNs:
    def __init__(self, cert_file: str, key_file: str, auth_key_pem: str | bytes | None = None,
                 key_id: str | None = None, team_id: str | None = None,
                 behaviour: MockBehaviour | None = None):
        self.behaviour = behaviour or MockBehaviour()
        self.stats = MockStats()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(cert_file, key_file)
        self._ssl.set_alpn_protocols(["h2"])
        self._public_key = _public_key(auth_key_pem) if auth_key_pem else None
        self._key_id, self._team_id = key_id, team_id
        self._valid_bearers: dict[bytes, int] = {}  # bearer -> iat
        self._expired_bearers: set[bytes] = set()
        self._random = random.Random(self.behaviour.seed)
        self._connections: set[_MockConnection] = set()
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

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

    def reset_stats(self) -> None:
        self.stats = MockStats(connections_open=self.stats.connections_open)

    def expire_provider_tokens(self) -> None:
        """Answer ExpiredProviderToken to every provider token seen so far."""
        self._expired_bearers.update(self._valid_bearers)

    def set_max_streams(self, n: int) -> None:
        """Change SETTINGS_MAX_CONCURRENT_STREAMS on every authenticated connection, now."""
        self.behaviour.max_streams = n
        for conn in self._connections:
            if conn.authenticated:
                conn.send_max_streams(n)

    def silence_connections(self) -> None:
        """Make every open connection a black hole: it reads and never answers (a dead NAT)."""
        for conn in self._connections:
            conn.silent = True

    def drop_connections(self) -> None:
        """Close every socket abruptly; answers not yet sent are lost."""
        for conn in list(self._connections):
            conn.drop()

    # --- the APNs rules ----------------------------------------------------------------------

    def check_bearer(self, auth: bytes | None) -> str | None:
        """None if the provider token is acceptable, else the 403 reason."""
        if not auth or not auth.lower().startswith(b"bearer "):
            return "MissingProviderToken"
        bearer = auth[7:]
        if bearer in self._expired_bearers:
            return "ExpiredProviderToken"
        iat = self._valid_bearers.get(bearer)
        if iat is None:
            if self._public_key is None:
                iat = int(time.time())
            else:
                try:
                    header = jwt.get_unverified_header(bearer)
                    claims = jwt.decode(bearer, self._public_key, algorithms=["ES256"],
                                        options={"verify_iat": False})
                    iat = int(claims["iat"])
                except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                    return "InvalidProviderToken"
                if (self._key_id and header.get("kid") != self._key_id
                        or self._team_id and claims.get("iss") != self._team_id):
                    return "InvalidProviderToken"
            self._valid_bearers[bearer] = iat
            self.stats.provider_tokens.add(bearer)
        if time.time() - iat > 3600:
            return "ExpiredProviderToken"
        return None

    def judge(self, headers: dict, body: bytes) -> tuple:
        """(status, reason, extra body fields) for a complete request; 'reset' for RST_STREAM."""
        b = self.behaviour
        if headers.get(b":method") != b"POST":
            return 405, "MethodNotAllowed", None
        path = headers.get(b":path", b"")
        if not path.startswith(b"/3/device/"):
            return 404, "BadPath", None
        token_bytes = path[10:]
        if len(token_bytes) % 2 or not _HEX.fullmatch(token_bytes):
            return 400, "BadDeviceToken", None
        token = token_bytes.decode()
        self.stats.requests[token] += 1
        self._wake_waiters()
        reason = self.check_bearer(headers.get(b"authorization"))
        if reason is not None:
            return 403, reason, None
        topic = headers.get(b"apns-topic")
        if not topic:
            return 400, "MissingTopic", None
        self.stats.topics[topic.decode()] += 1
        push_type = headers.get(b"apns-push-type", b"").decode()
        if push_type not in PUSH_TYPES:
            return 400, "InvalidPushType", None
        if b.topic is not None and not topic.decode().startswith(b.topic):
            return 400, "TopicDisallowed", None
        if headers.get(b"apns-priority", b"10") not in (b"1", b"5", b"10"):
            return 400, "BadPriority", None
        if len(headers.get(b"apns-collapse-id", b"")) > 64:
            return 400, "BadCollapseId", None
        if not headers.get(b"apns-expiration", b"0").isdigit():
            return 400, "BadExpirationDate", None
        if not body:
            return 400, "PayloadEmpty", None
        if len(body) > (5120 if push_type == "voip" else 4096):
            return 413, "PayloadTooLarge", None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return 400, "BadPayload", None
        if token in b.bad_tokens:
            return 400, "BadDeviceToken", None
        if token in b.unregistered:
            return 410, "Unregistered", {"timestamp": b.unregistered[token]}
        if b.reset_tokens.get(token, 0) > 0:
            b.reset_tokens[token] -= 1
            return "reset"
        fault = b.token_faults.get(token)
        if fault is not None and fault.times != 0:
            if fault.times is not None:
                fault.times -= 1
            return fault.status, fault.reason, None
        for status, probability in b.error_probability.items():
            if self._random.random() < probability:
                return status, _REASONS_FOR_STATUS.get(status, "InternalServerError"), None
        self.stats.delivered[token] += 1
        self.stats.payloads[token] = document
        return 200, None, None


class _Stream:
    __slots__ = ("body", "headers", "token")

    def __init__(self, headers: dict):
        self.headers = headers
        self.body = bytearray()
        path = headers.get(b":path", b"")
        self.token = path[10:].decode(errors="replace") if path.startswith(b"/3/device/") else ""


class _MockConnection(asyncio.Protocol):
    def __init__(self, mock: MockAPNs):
        self._mock = mock
        b = mock.behaviour
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: b.initial_max_streams or b.max_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: b.initial_window_size,
        })
        self._streams: dict[int, _Stream] = {}  # open: request seen, answer not yet sent
        self._timers: dict[int, asyncio.TimerHandle] = {}  # answers delayed by latency
        self._opened = 0
        self._requests = 0
        self._goaway_last: int | None = None
        self._transport = None
        self.authenticated = False
        self.silent = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self._transport = transport
        self._mock._connections.add(self)
        self._mock.stats.connections_opened += 1
        self._mock.stats.connections_open += 1
        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc):
        for timer in self._timers.values():
            timer.cancel()
        self._mock._connections.discard(self)
        self._mock.stats.connections_open -= 1
        self.closed.set_result(None)

    def abort(self):
        self._transport.abort()

    def drop(self):
        stats = self._mock.stats
        stats.drops += 1
        for stream in self._streams.values():
            if stream.token and stream.body is None:  # judged and accepted, answer unsent
                stats.lost_answers.append(stream.token)
        self._transport.abort()

    def send_max_streams(self, n: int):
        self._h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: n})
        self._flush()

    def data_received(self, data):
        if self.silent:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._mock.stats.protocol_errors += 1
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
            self._flush()
            # Written past h2, whose state machine would refuse to answer the streams this
            # GOAWAY still promises to finish.
            frame = GoAwayFrame(0)
            frame.last_stream_id = stream_id
            frame.additional_data = b'{"reason":"Shutdown"}'
            self._transport.write(frame.serialize())

    def _request_complete(self, stream_id: int, answers: list):
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        mock = self._mock
        verdict = mock.judge(stream.headers, bytes(stream.body))
        stream.body = None  # judged
        if verdict == "reset":
            mock.stats.resets_sent += 1
            del self._streams[stream_id]
            self._h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        status, reason, extra = verdict
        if status != 403 and not self.authenticated:
            self.authenticated = True
            if mock.behaviour.initial_max_streams:
                self.send_max_streams(mock.behaviour.max_streams)
        self._requests += 1
        b = mock.behaviour
        if b.drop_after and self._requests == b.drop_after and (
                b.max_drops is None or mock.stats.drops < b.max_drops):
            self.drop()
            return
        if b.latency_s > 0:
            loop = asyncio.get_running_loop()
            self._timers[stream_id] = loop.call_later(
                b.latency_s, self._answer_later, stream_id, status, reason, extra)
        else:
            answers.append((stream_id, status, reason, extra))

    def _answer_later(self, stream_id, status, reason, extra):
        del self._timers[stream_id]
        self._answer(stream_id, status, reason, extra)
        self._flush()

    def _answer(self, stream_id: int, status: int, reason: str | None, extra: dict | None):
        stream = self._streams.pop(stream_id, None)
        if stream is None or self._transport.is_closing():
            return
        mock = self._mock
        mock.stats.responses_by_status[status] += 1
        apns_id = stream.headers.get(b"apns-id") or str(uuid.uuid4()).encode()
        headers = [(b":status", str(status).encode()), (b"apns-id", apns_id)]
        if reason is None:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        else:
            body = json.dumps({"reason": reason, **(extra or {})}).encode()
            self._h2.send_headers(stream_id, headers + [(b"content-type", b"application/json")])
            self._h2.send_data(stream_id, body, end_stream=True)
        if self._goaway_last is not None and not self._streams:
            self._flush()
            self._transport.close()

    def _flush(self):
        data = self._h2.data_to_send()
        if data and not self._transport.is_closing():
            self._transport.write(data)


def _public_key(pem: str | bytes):
    pem = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, password=None).public_key()
    return serialization.load_pem_public_key(pem)


async def _serve_stats(mock: MockAPNs, port: int) -> asyncio.Server:
    async def handle(reader, writer):
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            method, path = (line.decode().split() + ["", ""])[:2]
            if method == "GET" and path == "/stats":
                code, body = 200, json.dumps(mock.stats.summary())
            elif method == "POST" and path == "/reset":
                mock.reset_stats()
                code, body = 200, '{"reset":true}'
            else:
                code, body = 404, "{}"
            writer.write(f"HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: "
                         f"{len(body)}\r\nconnection: close\r\n\r\n{body}".encode())
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m owlmetry.apns.mock", description=__doc__)
    ap.add_argument("--port", type=int, default=8443, help="0: any free port (printed)")
    ap.add_argument("--stats-port", type=int, default=None, help="GET /stats, POST /reset")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--auth-key", help="ES256 key (.p8 or public PEM) provider tokens must verify with")
    ap.add_argument("--key-id")
    ap.add_argument("--team-id")
    ap.add_argument("--max-streams", type=int, default=1000)
    ap.add_argument("--initial-max-streams", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--goaway-after", type=int, default=None)
    ap.add_argument("--drop-after", type=int, default=None)
    ap.add_argument("--p429", type=float, default=0.0)
    ap.add_argument("--p500", type=float, default=0.0)
    ap.add_argument("--p503", type=float, default=0.0)
    a = ap.parse_args(argv)
    behaviour = MockBehaviour(
        max_streams=a.max_streams, initial_max_streams=a.initial_max_streams,
        latency_s=a.latency_ms / 1000, goaway_after=a.goaway_after, drop_after=a.drop_after,
        error_probability={s: p for s, p in ((429, a.p429), (500, a.p500), (503, a.p503)) if p})
    auth_key = None
    if a.auth_key:
        with open(a.auth_key) as f:
            auth_key = f.read()

    async def serve():
        mock = MockAPNs(a.cert, a.key, auth_key, a.key_id, a.team_id, behaviour)
        port = await mock.start(port=a.port)
        stats = None if a.stats_port is None else await _serve_stats(mock, a.stats_port)
        stats_port = stats.sockets[0].getsockname()[1] if stats else None
        print(json.dumps({"mock_apns": "listening", "port": port, "stats_port": stats_port}),
              flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            if stats is not None:
                stats.close()
            await mock.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
