"""The access log (ACCESS_LOG=true): one JSON line per request, and never a secret in it."""

import asyncio
import json
import logging
import re
import uuid

import pytest

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.credentials import create_api_key
from owlmetry.http.access_log import LOGGER_NAME, runner_options
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from tests.conftest import Users

DEVICE_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
FIELDS = {"time", "method", "route", "path", "status", "duration_ms", "client_ip", "scheme",
          "caller", "user_id", "key_id", "response_bytes"}


@pytest.fixture
async def client(tmp_path, aiohttp_server, aiohttp_client, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    # SQLite only: nothing here depends on the database.
    app = create_app(Config(database_url=f"sqlite:///{tmp_path}/owlmetry.db"))
    return await aiohttp_client(await aiohttp_server(app, **runner_options(True)))


def lines(caplog) -> list[str]:
    return [record.message for record in caplog.records if record.name == LOGGER_NAME]


async def logged(caplog, count: int) -> list[dict]:
    """The first `count` lines, once written (after the answer has left the server)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(lines(caplog)) < count:
        assert loop.time() < deadline, f"{len(lines(caplog))} access log lines, not {count}"
        await asyncio.sleep(0.01)
    return [json.loads(line) for line in lines(caplog)[:count]]


async def test_a_line_says_who_asked_what_and_what_came_back(client, caplog):
    user_id, headers = await Users(client.app).headers()
    device_id = str(uuid.uuid4())
    response = await client.delete(f"/v1/devices/{device_id}?why=test", headers=headers)
    body = await response.read()
    assert response.status == 404

    [line] = await logged(caplog, 1)
    assert set(line) == FIELDS
    assert ISO_MS.fullmatch(line["time"])
    assert line["method"] == "DELETE"
    assert line["route"] == "/v1/devices/{id}"
    assert line["path"] == f"/v1/devices/{device_id}"
    assert (line["status"], line["response_bytes"]) == (404, len(body))
    assert (line["client_ip"], line["scheme"]) == ("127.0.0.1", "http")
    assert (line["caller"], line["user_id"], line["key_id"]) == ("user", user_id, None)
    assert line["duration_ms"] >= 0


async def test_no_credential_token_body_or_query_string_is_written(client, caplog):
    _, user_jwt = await Users(client.app).create()
    await client.post(f"/v1/devices?token={DEVICE_TOKEN}&code=123456",
                      json={"channel": "ios_push", "token": DEVICE_TOKEN},
                      headers={"Cookie": f"token={user_jwt}"})
    # A token where an id belongs (a client's mistake) is masked too.
    await client.delete(f"/v1/devices/{DEVICE_TOKEN}", headers={
        "Authorization": f"Bearer {user_jwt}"})
    _, key = await create_api_key(client.app[STORE], str(uuid.uuid4()), "server", "p", now_ms())
    await client.post("/v1/notifications", json={"user_ids": [], "type": "t", "title": "x"},
                      headers={"Authorization": f"Bearer {key}"})
    await client.get("/healthz", headers={"Authorization": "Bearer owl_server_not-a-real-key-at-all"})
    await client.post("/v1/auth/verify-code", json={"email": "carol@example.com", "code": "654321"})

    first, second, producer, unknown_key, login = await logged(caplog, 5)
    assert (first["path"], first["status"], first["caller"]) == ("/v1/devices", 201, "user")
    assert second["path"] == "/v1/devices/a1b2c3d4…"
    assert (producer["caller"], producer["status"]) == ("server", 400)
    assert producer["key_id"] and producer["user_id"] is None
    assert unknown_key["caller"] is None
    assert (login["route"], login["status"]) == ("/v1/auth/verify-code", 401)
    text = "\n".join(lines(caplog))
    for secret in (user_jwt, key, DEVICE_TOKEN, "123456", "not-a-real-key", "Bearer", "Cookie",
                   "654321", "carol"):
        assert secret not in text


async def test_a_request_no_route_saw_gets_a_line_too(client, caplog):
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.split(b" ", 2)[1] == b"400"
    [line] = await logged(caplog, 1)
    assert (line["status"], line["route"], line["caller"]) == (400, None, None)


def test_the_log_is_off_unless_asked_for():
    assert runner_options(False) == {"access_log": None}
    assert Config().access_log is False
