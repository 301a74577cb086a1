"""The server's connections as a raw socket sees them: request heads and bodies that stop or
trickle (408 and the connection closed, as nginx's client_header_timeout/client_body_timeout),
and requests aiohttp's parser refuses (JSON 400/414/431, never a server error in the log).

The app is the real one on the runner `owlmetry serve` uses, on both backends, with short
timeouts. Reads to the end of a connection are bounded by a generous guard so that a server
that never closes fails the test instead of hanging it; no test measures time.
"""

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from aiohttp import web

from owlmetry.clock import now_ms
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from owlmetry.http.protocol import Timeouts
from owlmetry.http.serving import AppRunner
from tests.ports import free_port

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
GUARD_S = 30  # far beyond any timeout here: only a server that never answers reaches it
TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DEVICE = json.dumps({"channel": "mobile_push", "platform": "ios", "token": TOKEN}).encode()


class Server:
    def __init__(self, app: web.Application, port: int):
        self.app, self.port = app, port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def bearer(self) -> str:
        user = await self.app[STORE].create_user(str(uuid.uuid4()),
                                                 f"{uuid.uuid4().hex[:10]}@example.com", now_ms())
        return self.app[TOKENS].issue(user.id, user.email)

    async def exchange(self, data: bytes) -> "Answer":
        """`data` on a new connection; everything the server sent until it closed."""
        reader, writer = await self.connect()
        writer.write(data)
        try:
            return await until_closed(reader)
        finally:
            writer.close()

    async def get(self, path: str, headers: dict | None = None) -> "Answer":
        lines = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        return await self.exchange(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{lines}\r\n".encode())


class Answer:
    def __init__(self, raw: bytes):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if raw else None
        self.headers = {name.lower(): value.strip() for name, _, value in
                        (line.partition(":") for line in lines[1:])}

    def json(self):
        assert self.headers["content-type"].startswith("application/json"), self.raw
        return json.loads(self.body)


async def until_closed(reader: asyncio.StreamReader) -> Answer:
    """Everything the server sent until it closed. A client still writing when the server
    closes may see that close as a reset (the server's kernel resets a socket closed with
    input unread) after the answer: what arrived before it is the answer."""
    received = bytearray()

    async def read_all() -> None:
        while block := await reader.read(65536):
            received.extend(block)

    try:
        await asyncio.wait_for(read_all(), GUARD_S)
    except ConnectionResetError:
        if not received:
            raise
    return Answer(bytes(received))


@pytest.fixture
async def server(config):
    app = create_app(config)
    runner = AppRunner(app, timeouts=Timeouts(HEADER_TIMEOUT_S, BODY_TIMEOUT_S), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Server(app, runner.addresses[0][1])
    await runner.cleanup()


def post_head(token: str, length: int) -> bytes:
    return (f"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def registered(server: Server, token: str) -> list:
    answer = await server.get("/v1/devices", {"Authorization": f"Bearer {token}"})
    return answer.json()["devices"]


async def test_a_body_that_stops_arriving_is_408_and_the_connection_closed(server):
    token = await server.bearer()
    reader, writer = await server.connect()
    writer.write(post_head(token, len(DEVICE)) + DEVICE[:10])
    # While that body is held up, everyone else is served.
    assert (await server.get("/healthz")).status == 200
    answer = await until_closed(reader)
    writer.close()
    assert answer.status == 408
    assert "stopped arriving" in answer.json()["error"]
    assert answer.headers["connection"] == "close"
    assert await registered(server, token) == []
    assert (await server.get("/healthz")).status == 200


async def test_a_body_that_never_starts_is_408(server):
    token = await server.bearer()
    answer = await server.exchange(post_head(token, len(DEVICE)))
    assert answer.status == 408


async def test_a_stalled_body_the_route_never_reads_ends_quietly(server, caplog):
    # Answered (401) before its body is read; aiohttp then drains the rest, which never comes.
    reader, writer = await server.connect()
    writer.write(b"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 100\r\n\r\n{")
    answer = await until_closed(reader)
    writer.close()
    assert answer.status == 401
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_body_that_trickles_without_long_pauses_is_served(server):
    # Pauses well inside the body timeout, adding up to more than it: the limit is between
    # reads, as nginx's client_body_timeout, not on the whole body.
    token = await server.bearer()
    reader, writer = await server.connect()
    writer.write(post_head(token, len(DEVICE)))
    pieces = [DEVICE[i:i + 6] for i in range(0, len(DEVICE), 6)]
    assert len(pieces) * 0.2 > BODY_TIMEOUT_S
    for piece in pieces:
        await asyncio.sleep(0.2)
        writer.write(piece)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
    writer.close()
    assert head.startswith(b"HTTP/1.1 201 ")
    assert len(await registered(server, token)) == 1


async def test_many_stalled_bodies_are_all_cut_off_and_the_server_stays_reachable(server):
    token = await server.bearer()
    connections = [await server.connect() for _ in range(100)]
    for _, writer in connections:
        writer.write(post_head(token, 1000) + b'{"chan')
    assert (await server.get("/healthz")).status == 200
    answers = await asyncio.gather(*(until_closed(reader) for reader, _ in connections))
    for _, writer in connections:
        writer.close()
    assert {answer.status for answer in answers} == {408}
    assert (await server.get("/healthz")).status == 200


async def test_a_head_that_stops_arriving_is_408_and_the_connection_closed(server):
    answer = await server.exchange(b"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert answer.status == 408
    assert "did not arrive in time" in answer.json()["error"]
    assert (await server.get("/healthz")).status == 200


async def test_a_head_that_trickles_is_cut_off_at_the_header_timeout(server):
    # Unlike a body, a head has one deadline for the whole of it.
    reader, writer = await server.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def trickle():
        for n in range(int(GUARD_S / 0.2)):
            await asyncio.sleep(0.2)
            if writer.is_closing():
                return
            writer.write(f"X-Trickle-{n}: 1\r\n".encode())

    trickling = asyncio.create_task(trickle())
    try:
        answer = await until_closed(reader)
    finally:
        trickling.cancel()
        writer.close()
    assert answer.status == 408


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server):
    reader, writer = await server.connect()
    answer = await until_closed(reader)
    writer.close()
    assert answer.raw == b""


LONG = "a" * 9000
MALFORMED = [
    (f"GET /healthz?{LONG} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "Request line too long"),
    (f"GET /{LONG} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "Request line too long"),
    (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {LONG}\r\n\r\n", 431, "Request header too large"),
    (f"GET /healthz HTTP/1.1\r\nHost: x\r\nReferer: https://{LONG}\r\n\r\n", 431,
     "Request header too large"),
    (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-{LONG}: 1\r\n\r\n", 431, "Request header too large"),
    ("GET /healthz HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{n}: 1\r\n" for n in range(200))
     + "\r\n", 431, "Too many request headers"),
    ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400, "Malformed HTTP request"),
    ("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Malformed HTTP request"),
    ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "Malformed HTTP request"),
    # What request smuggling and confused peers send: two lengths, a length and chunks, a bad
    # chunk size, a length past any integer, a folded header, HTTP/2's preface, a control
    # character in the method, an unknown version.
    ("POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
     400, "Malformed HTTP request"),
    ("POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
     "\r\n\r\n0\r\n\r\n", 400, "Malformed HTTP request"),
    ("POST /v1/devices HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
     400, "Malformed HTTP request"),
    ("POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
     400, "Malformed HTTP request"),
    ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n", 400, "Malformed HTTP request"),
    ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "Malformed HTTP request"),
    ("G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Malformed HTTP request"),
    ("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "Malformed HTTP request"),
]


@pytest.mark.parametrize("request_text,status,message", MALFORMED)
async def test_what_the_parser_refuses_is_json_and_not_a_server_error(server, caplog, request_text,
                                                                      status, message):
    caplog.set_level(logging.DEBUG)
    answer = await server.exchange(request_text.encode("latin-1"))  # and the server closed it
    assert answer.status == status
    assert message in answer.json()["error"]
    assert (await server.get("/healthz")).status == 200
    errors = [record for record in caplog.records
              if record.levelno >= logging.ERROR or record.exc_info]
    assert errors == []


def test_owlmetry_serve_uses_these_connections_and_its_settings(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SMTP_"))},
           "CLIENT_HEADER_TIMEOUT": "1", "CLIENT_BODY_TIMEOUT": "1"}
    server = subprocess.Popen([sys.executable, "-m", "owlmetry", "serve", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        while "listening on" not in (line := server.stdout.readline()):
            assert line, "the server stopped before listening"
        answers = []
        for data in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                     b"POST /v1/auth/send-code HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{",
                     f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {LONG}\r\n\r\n".encode()):
            with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as raw:
                raw.sendall(data)
                answers.append(Answer(b"".join(iter(lambda: raw.recv(65536), b""))))
        assert [answer.status for answer in answers] == [408, 408, 431]
        assert all("error" in answer.json() for answer in answers)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=GUARD_S)
    assert server.returncode == 0
    assert "Traceback" not in output and " ERROR " not in output
