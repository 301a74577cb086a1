"""The shipped nginx site config in front of a real `owlmetry serve`, as a client sees it.

The client connects from 127.0.0.2 and nginx from 127.0.0.1, so the server's access log tells
the client's address (taken from X-Forwarded-For) from the proxy's (the direct peer).
"""

from http.cookies import Morsel, SimpleCookie
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    access_line,
    access_lines,
    access_lines_with,
    only_sqlite,
    owlmetry,
    session_from,
)

pytestmark = only_sqlite

CLIENT = "127.0.0.2"
TRUSTING = {"TRUSTED_PROXIES": "127.0.0.1", "ACCESS_LOG": "true"}
DEVICE = {"channel": "ios_push", "token": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
          "environment": "sandbox", "app_version": "2.1.0"}


@pytest.fixture
async def user(database_url):
    """(id, JWT) of a user made with the CLI, as an operator would."""
    user_id = await owlmetry(database_url, "users", "create", "alice@example.com")
    return user_id, await owlmetry(database_url, "users", "token", "alice@example.com")


@pytest.fixture
async def client(client_tls):
    async with session_from(CLIENT, client_tls) as session:
        yield session


async def test_devices_over_https_with_the_cookie_and_the_real_client_address(
        servers, nginx, user, client):
    user_id, jwt = user
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    cookie = {"Cookie": f"token={jwt}"}
    # A client cannot choose its address by sending the header itself: nginx appends the
    # address it sees, and the server reads from the right.
    spoofed = {**cookie, "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"}

    async with client.post(f"{proxy.https}/v1/devices", json=DEVICE, headers=spoofed) as answer:
        assert answer.status == 201, await answer.text()
        device = (await answer.json())["device"]
    async with client.get(f"{proxy.https}/v1/devices", headers=cookie) as answer:
        assert answer.status == 200
        assert (await answer.json())["devices"] == [device]

    line = await access_line(server, method="POST", route="/v1/devices")
    assert line["client_ip"] == CLIENT
    assert line["scheme"] == "https"
    assert (line["caller"], line["user_id"], line["status"]) == ("user", user_id, 201)
    listed = await access_line(server, method="GET", route="/v1/devices")
    assert (listed["client_ip"], listed["scheme"], listed["status"]) == (CLIENT, "https", 200)
    assert jwt not in server.log() and DEVICE["token"] not in server.log()


async def test_a_server_that_does_not_trust_the_proxy_ignores_its_headers(
        servers, nginx, user, client):
    _, jwt = user
    server = await servers("server", ACCESS_LOG="true")
    proxy = await nginx([server.port])
    async with client.get(f"{proxy.https}/v1/devices",
                          headers={"Cookie": f"token={jwt}"}) as answer:
        assert answer.status == 200
    line = await access_line(server, route="/v1/devices")
    assert (line["client_ip"], line["scheme"]) == ("127.0.0.1", "http")  # nginx, as it connects


async def test_direct_requests_cannot_spoof_the_forwarded_headers(servers, user, client):
    _, jwt = user
    server = await servers("server", **TRUSTING)
    spoofed = {"Cookie": f"token={jwt}", "X-Forwarded-For": "198.51.100.1",
               "X-Forwarded-Proto": "https"}
    async with client.get(f"{server.url}/v1/devices", headers=spoofed) as answer:
        assert answer.status == 200
    line = await access_line(server, route="/v1/devices")
    assert (line["client_ip"], line["scheme"]) == (CLIENT, "http")


def session_cookie(answer) -> Morsel:
    cookies = SimpleCookie()
    for header in answer.headers.getall("Set-Cookie"):
        cookies.load(header)
    return cookies["token"]


async def test_the_session_cookie_is_secure_exactly_when_the_client_uses_https(
        servers, nginx, client):
    server = await servers("server", **TRUSTING)  # COOKIE_SECURE unset
    proxy = await nginx([server.port])
    # Over HTTPS through nginx: Secure, so the browser never sends it over plain HTTP.
    async with client.post(f"{proxy.https}/v1/auth/logout") as answer:
        assert answer.status == 200
        assert session_cookie(answer)["secure"]
    # Plain HTTP, directly: not Secure (the browser would drop it).
    async with client.post(f"{server.url}/v1/auth/logout") as answer:
        assert answer.status == 200
        assert not session_cookie(answer)["secure"]
    # Plain HTTP from a peer that is not the proxy, claiming HTTPS: not believed.
    async with client.post(f"{server.url}/v1/auth/logout",
                           headers={"X-Forwarded-Proto": "https"}) as answer:
        assert answer.status == 200
        assert not session_cookie(answer)["secure"]
    lines = await access_lines_with(server, 3, route="/v1/auth/logout")
    assert [line["scheme"] for line in lines] == ["https", "http", "http"]


async def test_body_limits_are_the_servers_and_every_413_is_json(
        servers, nginx, user, client, database_url):
    _, jwt = user
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    key = await owlmetry(database_url, "keys", "create", "--kind", "server")

    # Over 4 MiB (the largest body the server takes): nginx refuses it, the server never sees it.
    too_big = b"x" * (4 * 1024 * 1024 + 1)
    async with client.post(f"{proxy.https}/v1/notifications", data=too_big,
                           headers={"Authorization": f"Bearer {key}",
                                    "Content-Type": "application/json"}) as answer:
        assert answer.status == 413
        assert answer.content_type == "application/json"
        assert await answer.json() == {"error": "Request body too large (the limit is 4 MiB)"}
    # Within nginx's limit but over the 64 KiB of /v1/devices: the server's own 413.
    devices_body = b"x" * (100 * 1024)
    async with client.post(f"{proxy.https}/v1/devices", data=devices_body,
                           headers={"Cookie": f"token={jwt}",
                                    "Content-Type": "application/json"}) as answer:
        assert answer.status == 413
        assert await answer.json() == {"error": "Request body too large (the limit is 64 KiB)"}
    await access_line(server, route="/v1/devices", status=413)
    assert not [line for line in access_lines(server) if line["path"] == "/v1/notifications"]


async def test_plain_http_is_redirected_to_https(servers, nginx, client):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    async with client.get(f"{proxy.http}/v1/devices?limit=1", allow_redirects=False) as answer:
        assert answer.status == 301
        assert answer.headers["Location"] == "https://127.0.0.1/v1/devices?limit=1"
    assert not [line for line in access_lines(server) if line["route"] == "/v1/devices"]


async def test_metrics_pass_from_loopback_only(servers, nginx, client, client_tls):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    # The shipped rule is 127.0.0.1 and ::1; any other address, here 127.0.0.2, is refused.
    async with client.get(f"{proxy.https}/metrics") as answer:
        assert answer.status == 403
        assert await answer.json() == {"error": "Forbidden"}
    async with (session_from("127.0.0.1", client_tls) as local,
                local.get(f"{proxy.https}/metrics") as answer):
        assert answer.status == 200
        assert "owlmetry_http_requests" in await answer.text()
    # Only the loopback request reached the server.
    line = await access_line(server, path="/metrics")
    assert line["client_ip"] == "127.0.0.1"
    assert len([line for line in access_lines(server) if line["path"] == "/metrics"]) == 1


async def test_a_server_that_is_down_is_a_json_502(servers, nginx, client):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    async with client.get(f"{proxy.https}/healthz") as answer:
        assert answer.status == 200
        assert await answer.json() == {"status": "ok"}
    await server.kill()
    async with client.get(f"{proxy.https}/healthz") as answer:
        assert answer.status == 502
        assert answer.content_type == "application/json"
        assert await answer.json() == {"error": "The server is unavailable"}


async def test_requests_nginx_refuses_are_answered_in_json(servers, nginx, client):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    async with client.get(f"{proxy.https}/v1/devices",
                          headers={"Cookie": "token=" + "x" * 20_000}) as answer:
        assert answer.status == 400
        assert await answer.json() == {"error": "Request headers too large"}
    async with client.get(f"{proxy.https}/v1/{'x' * 20_000}") as answer:
        assert answer.status == 414
        assert await answer.json() == {"error": "Request URI too long"}
    # The error answers are nginx's alone: a client cannot ask for one.
    async with client.get(f"{proxy.https}/_nginx_error/forbidden") as answer:
        assert answer.status == 404
        assert await answer.json() == {"error": "Not found"}
    # Plain HTTP on the HTTPS port.
    async with client.get(f"http://127.0.0.1:{proxy.https_port}/healthz") as answer:
        assert answer.status == 400
        assert await answer.json() == {"error": "This port speaks HTTPS"}
    assert not [line for line in access_lines(server) if line["path"] != "/healthz"]


async def test_answers_through_nginx_are_the_servers_unchanged(servers, nginx, client):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    async with client.get(f"{proxy.https}/v1/devices") as answer:
        assert answer.status == 401
        assert await answer.json() == {"error": "Authentication required"}
    async with client.delete(f"{proxy.https}/v1/devices/nope",
                             headers={"Authorization": "Basic x"}) as answer:
        assert answer.status == 401
        assert "Bearer" in (await answer.json())["error"]


def open_connections_to(port: int) -> int:
    """Established TCP connections whose server side is 127.0.0.1:`port` (Linux /proc)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _, state = line.split()[1:4]
        if local == f"0100007F:{port:04X}" and state == "01":
            count += 1
    return count


async def test_nginx_keeps_its_connections_to_the_server_open(servers, nginx, client):
    server = await servers("server", **TRUSTING)
    proxy = await nginx([server.port])
    for _ in range(10):
        async with client.get(f"{proxy.https}/healthz") as answer:
            assert answer.status == 200
    # Without keep-alive each request would have had its own connection, closed at its end.
    assert 1 <= open_connections_to(server.port) < 10


async def test_login_requests_are_limited_per_client_address(servers, nginx, client):
    # The server's own per-address limit raised out of the way, so every 429 is nginx's.
    server = await servers("server", **TRUSTING, LOGIN_SENDS_PER_ADDRESS="1000")
    proxy = await nginx([server.port])
    statuses = []
    for n in range(40):
        async with client.post(f"{proxy.https}/v1/auth/send-code",
                               json={"email": f"user{n}@example.com"}) as answer:
            statuses.append(answer.status)
            if answer.status == 429:
                assert await answer.json() == {
                    "error": "Too many login requests from this address; try again in a minute"}
                assert answer.headers["Retry-After"] == "60"
    # The burst of 20 passes (plus whatever the 10-a-minute rate refilled meanwhile).
    assert statuses[:20] == [200] * 20
    assert statuses[-1] == 429 and set(statuses) == {200, 429}
    passed = statuses.count(200)
    assert len(await access_lines_with(server, passed, route="/v1/auth/send-code")) == passed
    # Other routes are not limited.
    for _ in range(30):
        async with client.get(f"{proxy.https}/healthz") as answer:
            assert answer.status == 200


async def test_the_server_limits_login_per_client_address_behind_nginx(servers, nginx, client):
    # The server's own limit holds behind nginx too, counted by the client's address as nginx
    # forwards it (X-Forwarded-For from a trusted proxy); its 429 is the server's JSON.
    server = await servers("server", **TRUSTING, LOGIN_SENDS_PER_ADDRESS="3")
    proxy = await nginx([server.port])
    statuses = []
    for n in range(4):
        async with client.post(f"{proxy.https}/v1/auth/send-code",
                               json={"email": f"user{n}@example.com"}) as answer:
            statuses.append(answer.status)
            if answer.status == 429:
                assert (await answer.json())["error"].startswith("Too many verification codes")
                assert int(answer.headers["Retry-After"]) > 0
    assert statuses == [200, 200, 200, 429]
