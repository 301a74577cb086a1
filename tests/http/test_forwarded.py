"""X-Forwarded-For / X-Forwarded-Proto: believed from a trusted proxy only, read from the right.

The app is the real one; what it took the client's address and scheme to be is read from its
access log (which reports the request as the handlers saw it). The test client connects from
127.0.0.1.
"""

import asyncio
import ipaddress
import json
import logging

import pytest

from owlmetry.config import Config, parse_networks
from owlmetry.http.access_log import LOGGER_NAME, runner_options
from owlmetry.http.app import create_app
from owlmetry.http.forwarded import client_address, forwarded_scheme, parse_address
from tests.conftest import Users

TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def trusted(text: str):
    return parse_networks("TRUSTED_PROXIES", text)


async def access_record(caplog, seen_before: int = 0) -> dict:
    """The newest access log line once there are more than `seen_before`: the server writes it
    after the answer has left, so the client can see the answer first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        lines = [r.message for r in caplog.records if r.name == LOGGER_NAME]
        if len(lines) > seen_before:
            return json.loads(lines[-1])
        assert loop.time() < deadline, "no access log line"
        await asyncio.sleep(0.01)


@pytest.fixture
def app_behind(tmp_path, aiohttp_server, aiohttp_client, caplog):
    """`await app_behind("10.0.0.0/8, ...")` -> a test client of the app trusting those proxies,
    whose access log lines `caplog` collects."""
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)

    async def make(proxies: str):
        # SQLite only: nothing here depends on the database.
        config = Config(database_url=f"sqlite:///{tmp_path}/owlmetry.db",
                        trusted_proxies=trusted(proxies))
        server = await aiohttp_server(create_app(config), **runner_options(True))
        return await aiohttp_client(server)

    return make


async def seen_as(client, caplog, path: str = "/healthz", **headers) -> tuple[str, str]:
    """What the app took the client's address and scheme to be, for a GET with `headers`."""
    before = len([r for r in caplog.records if r.name == LOGGER_NAME])
    response = await client.get(path, headers=headers)
    assert response.status == 200
    line = await access_record(caplog, before)
    return line["client_ip"], line["scheme"]


@pytest.mark.parametrize(("headers", "client_ip", "scheme"), [
    ({}, "127.0.0.1", "http"),
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, "203.0.113.7", "https"),
    # What the client itself sent is on the left; the first untrusted address from the right wins.
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, "203.0.113.7", "http"),
    ({"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1", "http"),
    ({"X-Forwarded-Proto": "HTTPS"}, "127.0.0.1", "https"),
    # Malformed: ignored, never a failed request.
    ({"X-Forwarded-For": "not-an-address", "X-Forwarded-Proto": "gopher"}, "127.0.0.1", "http"),
    ({"X-Forwarded-For": "203.0.113.7, , 10.0.0.1"}, "127.0.0.1", "http"),
    ({"X-Forwarded-For": "203.0.113.7:4711"}, "127.0.0.1", "http"),
])
async def test_a_trusted_proxy_names_the_client_and_the_scheme(app_behind, caplog, headers,
                                                               client_ip, scheme):
    client = await app_behind("127.0.0.1")
    assert await seen_as(client, caplog, **headers) == (client_ip, scheme)


async def test_trusted_hops_are_skipped_from_the_right(app_behind, caplog):
    client = await app_behind("127.0.0.0/8, 10.0.0.0/8")
    assert await seen_as(client, caplog, **{
        "X-Forwarded-For": "192.0.2.1, 198.51.100.1, 10.1.2.3, 127.0.0.9"}) == ("198.51.100.1",
                                                                               "http")


async def test_headers_from_an_untrusted_peer_are_ignored(app_behind, caplog):
    client = await app_behind("10.0.0.0/8, ::1")
    assert await seen_as(client, caplog, **{
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}) == ("127.0.0.1", "http")


async def test_requests_with_bodies_and_credentials_work_through_the_middleware(app_behind,
                                                                                 caplog):
    client = await app_behind("127.0.0.1")
    user_id, headers = await Users(client.app).headers()
    response = await client.post("/v1/devices", json={"channel": "ios_push", "token": TOKEN},
                                 headers={**headers, "X-Forwarded-For": "203.0.113.7",
                                          "X-Forwarded-Proto": "https"})
    assert response.status == 201
    line = await access_record(caplog)
    assert (line["client_ip"], line["scheme"], line["user_id"]) == ("203.0.113.7", "https",
                                                                    user_id)


def address(text: str):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("peer", "values", "proxies", "expected"), [
    ("127.0.0.1", [], "127.0.0.1", "127.0.0.1"),
    ("127.0.0.1", ["127.0.0.1"], "127.0.0.1", "127.0.0.1"),  # the proxy host as a client
    ("127.0.0.1", ["203.0.113.7", "198.51.100.1"], "127.0.0.1", "198.51.100.1"),  # two headers
    ("10.0.0.2", ["203.0.113.7, 10.0.0.1"], "10.0.0.0/8", "203.0.113.7"),
    ("10.0.0.2", ["::ffff:203.0.113.7"], "10.0.0.0/8", "203.0.113.7"),
    ("::1", ["2001:db8::5, fd00::1"], "::1, fd00::/8", "2001:db8::5"),
    ("10.0.0.2", ["203.0.113.7, garbage"], "10.0.0.0/8", "10.0.0.2"),
    ("10.0.0.2", [""], "10.0.0.0/8", "10.0.0.2"),
])
def test_client_address(peer, values, proxies, expected):
    assert client_address(address(peer), values, trusted(proxies)) == address(expected)


def test_the_nearest_proxys_scheme_counts():
    assert forwarded_scheme([]) is None
    assert forwarded_scheme(["https"]) == "https"
    assert forwarded_scheme(["http", "https"]) == "https"
    assert forwarded_scheme(["https, http"]) == "http"
    assert forwarded_scheme(["wss"]) is None


def test_a_dual_stack_peer_is_compared_as_ipv4():
    assert parse_address("::ffff:127.0.0.1") == address("127.0.0.1")
    assert parse_address("[::1]") is None


@pytest.mark.parametrize(("proxies", "secure"), [("127.0.0.1", True), ("10.0.0.0/8", False)])
async def test_handlers_see_https_through_a_trusted_proxy_only(app_behind, proxies, secure):
    client = await app_behind(proxies)
    response = await client.post("/v1/auth/logout", headers={"X-Forwarded-Proto": "https"})
    assert response.status == 200
    assert bool(response.cookies["token"]["secure"]) is secure
