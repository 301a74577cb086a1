"""`MockFCM`: the mock's TLS server. HTTP/2 (FCM's sends) on the APNs mock's h2 machinery, and
HTTP/1.1 (Google's token endpoint as OAuth clients reach it, and sends from HTTP/1.1 clients)
on aiohttp's low-level server, chosen per connection by ALPN, on one port.

Owns routing a request to FCM's rules (`rules.py`) and faults (`faults.py`), counting it
(`stats.py`), and writing FCM's answers on a stream. The connection-level behaviour (stream
limits, GOAWAY after N streams, dropped sockets, latency, PING) is `MockAPNs`'s, inherited.
"""

import asyncio
import time
from collections.abc import Callable

import orjson
from aiohttp import web

from owlmetry.apns.mock.server import MockAPNs, _MockConnection

from ..service_account import GOOGLE_TOKEN_URI, ServiceAccount
from . import faults, rules
from .faults import FcmBehaviour
from .rules import Answer
from .stats import FcmStats


class MockFCM(MockAPNs):
    """A stand-in for FCM HTTP v1 and Google's token endpoint, for one service account.

    In-process: `mock = MockFCM(cert, key, account, behaviour); await mock.start()`; clients
    use `mock.url` as FCM_URL and `mock.token_uri` as the service account's token_uri.
    `clock` is what access tokens expire by (a test may move it).
    """

    def __init__(self, cert_file: str, key_file: str, account: ServiceAccount,
                 behaviour: FcmBehaviour | None = None, project_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic, accept_google_audience: bool = False):
        super().__init__(cert_file, key_file, behaviour=behaviour or FcmBehaviour())
        # google-auth (so firebase-admin) always addresses its assertion to Google's endpoint,
        # whatever the file's token_uri; Google accepts that, and so may the mock.
        self._google_audience = accept_google_audience
        self.stats = FcmStats()
        self.project_id = project_id or account.project_id
        self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        self._access = rules.AccessTokenRule(
            account, lambda: self.behaviour.token_lifetime_s, self._audiences, clock)
        self._http1: web.Server | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        return self.url + rules.TOKEN_PATH

    def _audiences(self) -> set[str]:
        own = {f"https://{host}:{self.port}{rules.TOKEN_PATH}" for host in ("127.0.0.1", "localhost")}
        return own | {GOOGLE_TOKEN_URI} if self._google_audience else own

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._http1 = web.Server(self._handle_http1, access_log=None)
        self._server = await loop.create_server(lambda: _AlpnSwitch(self), host, port,
                                                ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        await super().stop()
        if self._http1 is not None:
            await self._http1.shutdown(1.0)

    def reset_stats(self) -> None:
        self.stats = FcmStats(connections_open=self.stats.connections_open)

    def expire_access_tokens(self) -> None:
        """Answer 401 to every access token issued so far (as when they outlive their hour)."""
        self._access.expire_all()

    def judge(self, headers: dict, body: bytes) -> Answer:
        """The answer to a complete HTTP/2 request."""
        return self.handle(headers.get(b":method", b"").decode(), headers.get(b":path", b"").decode(),
                           headers.get(b"authorization"), body)

    def handle(self, method: str, path: str, authorization: bytes | None, body: bytes) -> Answer:
        """The answer to a complete request, either protocol: FCM's rules, then the faults."""
        path = path.partition("?")[0]
        stats = self.stats
        if path == rules.TOKEN_PATH and method == "POST":
            stats.token_requests += 1
            answer = self._access.issue(body)
            if answer.accepted:
                stats.tokens_issued += 1
            else:
                stats.token_refusals[answer.outcome] += 1
            return answer
        project = rules.send_project(path)
        if project is None or method != "POST":
            return rules.fcm_error(404, "NOT_FOUND", "Requested entity was not found.")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        token = rules.message_token(document)
        stats.requests[token] += 1
        self._wake_waiters()
        answer = self._access.check(authorization)
        if answer is None:
            stats.provider_tokens.add(authorization)
            if project != self.project_id:
                answer = rules.fcm_error(
                    403, "PERMISSION_DENIED",
                    f"Permission 'cloudmessaging.messages.create' denied on resource "
                    f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).")
            else:
                answer = rules.check_send(project, document, self.behaviour.invalid_prefixes)
                if answer.accepted:
                    answer = faults.apply(self.behaviour, token, answer, self._random)
        if answer.accepted:
            stats.delivered[token] += 1
            stats.payloads[token] = answer.message
        stats.outcomes["RESET" if answer.reset else answer.outcome] += 1
        return answer

    async def _handle_http1(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        authorization = request.headers.get("authorization")
        answer = self.handle(request.method, request.path,
                             authorization.encode("latin-1") if authorization else None, body)
        if answer.reset:  # HTTP/1.1 has no stream to reset: the connection goes instead
            request.transport.abort()
            return web.Response(status=500)
        self.stats.responses_by_status[answer.status] += 1
        return web.Response(status=answer.status, body=answer.body,
                            headers={name.decode(): value.decode() for name, value in answer.headers})


class _FcmH2Connection(_MockConnection):
    """The APNs mock's h2 connection, answering with FCM's bodies and headers."""

    def _request_complete(self, stream_id: int, answers: list):
        stream = self._streams.get(stream_id)
        if stream is not None and stream.body is not None:
            # The token is in the body here, not the path: named so a drop can list it as lost.
            try:
                stream.token = rules.message_token(orjson.loads(bytes(stream.body)))
            except orjson.JSONDecodeError:
                pass
        super()._request_complete(stream_id, answers)

    def _answer(self, stream_id: int, answer: Answer):
        stream = self._streams.pop(stream_id, None)
        if stream is None or self._transport.is_closing():
            return
        self._mock.stats.responses_by_status[answer.status] += 1
        headers = [(b":status", str(answer.status).encode()), *answer.headers]
        if answer.body:
            self._h2.send_headers(stream_id, headers)
            self._h2.send_data(stream_id, answer.body, end_stream=True)
        else:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        if self._goaway_last is not None and not self._streams:
            self._flush()
            self._transport.close()


class _AlpnSwitch(asyncio.Protocol):
    """Hands a TLS connection, once its handshake chose a protocol by ALPN, to the h2 server or
    to aiohttp's HTTP/1.1 one, which then gets the transport's events directly."""

    def __init__(self, mock: MockFCM):
        self._mock = mock

    def connection_made(self, transport):
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            inner = _FcmH2Connection(self._mock)
        else:
            inner = self._mock._http1()
        transport.set_protocol(inner)
        inner.connection_made(transport)
