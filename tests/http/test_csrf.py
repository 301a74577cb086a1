"""Cross-site request forgery, as a page on another site would try it through the victim's
browser (the session cookie attached by itself, a form or text/plain body, its own Origin), on
both backends; and what must keep working: the server's own pages, ALLOWED_ORIGINS, programs
without an Origin, Bearer credentials from anywhere."""

import ipaddress
import uuid
from dataclasses import replace

import pytest

from owlmetry.clock import now_ms
from owlmetry.config import SmtpSettings
from owlmetry.http import openapi
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from tests.http.test_openapi import Reference
from tests.smtp_server import (  # noqa: F401  (mailbox: a fixture)
    SMTP_PASSWORD,
    SMTP_USER,
    SMTP_WARNING,
    mailbox,
)

EVIL = "https://evil.example"
NOT_JSON = {"error": "Content-Type must be application/json"}
DEVICE = {"channel": "mobile_push", "platform": "ios", "token": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}
DEVICE_TEXT = '{"channel": "mobile_push", "platform": "ios", "token": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}'


@pytest.fixture
def make_client(config, aiohttp_client):
    async def make(**settings):
        return await aiohttp_client(create_app(replace(config, **settings)))
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def session(client) -> tuple[str, dict, dict]:
    """A user; the cookie a browser holds for them, and their Bearer header."""
    user = await client.app[STORE].create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex[:10]}@example.com",
                                               now_ms())
    token = client.app[TOKENS].issue(user.id, user.email)
    return user.id, {"Cookie": f"token={token}"}, {"Authorization": f"Bearer {token}"}


def own_origin(client) -> str:
    return str(client.make_url("/").origin())


async def devices(client, bearer) -> list:
    response = await client.get("/v1/devices", headers=bearer)
    return (await response.json())["devices"]


@pytest.mark.parametrize("content_type,body", [
    ("text/plain", DEVICE_TEXT),  # what a cross-site fetch() or form with enctype=text/plain sends
    ("application/x-www-form-urlencoded", "channel=mobile_push&token=a1b2"),
    ("multipart/form-data; boundary=x", "--x\r\n\r\n--x--\r\n"),
    (None, DEVICE_TEXT),
])
async def test_a_cookie_request_with_a_body_that_is_not_json_is_415_and_changes_nothing(
        client, content_type, body):
    _, cookie, bearer = await session(client)
    headers = {**cookie, **({"Content-Type": content_type} if content_type else {})}
    response = await client.post("/v1/devices", data=body.encode(), headers=headers,
                                 skip_auto_headers={"Content-Type"})
    assert (response.status, await response.json()) == (415, NOT_JSON)
    assert await devices(client, bearer) == []


async def test_a_cookie_request_from_another_origin_is_403_and_changes_nothing(client):
    _, cookie, bearer = await session(client)
    for origin in (EVIL, "null", "http://127.0.0.1.evil.example", own_origin(client) + ".evil"):
        response = await client.post("/v1/devices", json=DEVICE, headers={**cookie, "Origin": origin})
        assert response.status == 403, origin
        assert "Cross-site request refused" in (await response.json())["error"]
    # Without Origin, the Referer's origin is the one that counts.
    response = await client.post("/v1/devices", json=DEVICE,
                                 headers={**cookie, "Referer": f"{EVIL}/attack.html?x=1"})
    assert response.status == 403
    # A browser that names no origin still says where the request came from.
    response = await client.post("/v1/devices", json=DEVICE,
                                 headers={**cookie, "Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert await devices(client, bearer) == []


async def test_the_servers_own_pages_and_programs_without_an_origin_may_use_the_cookie(client):
    _, cookie, bearer = await session(client)
    own = own_origin(client)
    for headers in ({"Origin": own}, {"Origin": own.upper()}, {"Referer": f"{own}/settings"},
                    {"Sec-Fetch-Site": "same-origin"}, {}):
        response = await client.post("/v1/devices", json=DEVICE, headers={**cookie, **headers})
        assert response.status == 201, headers
    assert len(await devices(client, bearer)) == 1


async def test_routes_without_a_body_refuse_form_types_but_not_a_bare_request(client):
    user_id, cookie, bearer = await session(client)
    for path in ("/v1/notifications/mark-all-read", "/v1/auth/logout"):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await client.post(path, headers={**cookie, "Content-Type": content_type})
            assert (response.status, await response.json()) == (415, NOT_JSON), (path, content_type)
        response = await client.post(path, headers={**cookie, "Origin": EVIL})
        assert response.status == 403, path
        response = await client.post(path, headers={**cookie, "Origin": EVIL,
                                                    "Content-Type": "application/json"})
        assert response.status == 403, path
        # As the Owlmetry dashboard sends them: no body, no Content-Type, its own origin.
        response = await client.post(path, headers={**cookie, "Origin": own_origin(client)},
                                     skip_auto_headers={"Content-Type"})
        assert response.status == 200, path


async def test_a_forged_delete_keeps_the_device(client):
    _, cookie, bearer = await session(client)
    response = await client.post("/v1/devices", json=DEVICE, headers=bearer)
    device_id = (await response.json())["device"]["id"]
    response = await client.delete(f"/v1/devices/{device_id}", headers={**cookie, "Origin": EVIL})
    assert response.status == 403
    assert [device["id"] for device in await devices(client, bearer)] == [device_id]
    response = await client.delete(f"/v1/devices/{device_id}",
                                   headers={**cookie, "Origin": own_origin(client)})
    assert response.status == 200


async def test_bearer_credentials_are_not_checked_for_origin_or_content_type(client):
    _, cookie, bearer = await session(client)
    # An Authorization header is the credential even with a cookie beside it.
    response = await client.post("/v1/devices", json=DEVICE,
                                 headers={**bearer, **cookie, "Origin": EVIL})
    assert response.status == 201
    response = await client.post("/v1/notifications/mark-all-read",
                                 headers={**bearer, "Origin": EVIL, "Content-Type": "text/plain"})
    assert response.status == 200


async def test_allowed_origins_may_use_the_cookie(make_client):
    client = await make_client(allowed_origins=frozenset({"https://app.example.com"}))
    _, cookie, bearer = await session(client)
    for origin in ("https://app.example.com", "https://APP.example.com:443"):
        response = await client.post("/v1/devices", json=DEVICE, headers={**cookie, "Origin": origin})
        assert response.status == 201, origin
    for origin in ("http://app.example.com", "https://app.example.com:8443", EVIL):
        response = await client.post("/v1/devices", json=DEVICE, headers={**cookie, "Origin": origin})
        assert response.status == 403, origin


async def test_behind_a_trusted_proxy_the_origin_is_the_one_the_browser_used(make_client):
    client = await make_client(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    _, cookie, _ = await session(client)
    proxied = {**cookie, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "push.example.com"}
    response = await client.post("/v1/devices", json=DEVICE,
                                 headers={**proxied, "Origin": "https://push.example.com"})
    assert response.status == 201
    response = await client.post("/v1/devices", json=DEVICE,
                                 headers={**proxied, "Origin": own_origin(client)})
    assert response.status == 403


async def test_an_untrusted_peer_cannot_name_its_own_origin_as_the_servers(client):
    _, cookie, _ = await session(client)
    response = await client.post("/v1/devices", json=DEVICE, headers={
        **cookie, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "Origin": EVIL})
    assert response.status == 403


async def test_an_unknown_path_is_still_404(client):
    _, cookie, _ = await session(client)
    response = await client.post("/v1/nothing-here", data=b"x", headers={**cookie, "Origin": EVIL})
    assert response.status == 404


@SMTP_WARNING
async def test_a_forged_login_is_refused_and_sets_no_cookie(make_client, mailbox):  # noqa: F811
    client = await make_client(smtp=SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER,
                                                 SMTP_PASSWORD))
    user = await client.app[STORE].create_user(str(uuid.uuid4()), "mallory@example.com", now_ms())
    await client.post("/v1/auth/send-code", json={"email": user.email})
    (code,) = await mailbox.wait_for(user.email)  # mailed in the background
    form = f"email={user.email}&code={code}"
    attempts = [
        # The attacker's page logs the victim's browser into the attacker's account: no cookie
        # of the victim's is involved, so the check does not depend on one.
        ({"Origin": EVIL}, {"json": {"email": user.email, "code": code}}, 403),
        ({"Content-Type": "text/plain"}, {"data": f'{{"email": "{user.email}", "code": "{code}"}}'},
         415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, {"data": form}, 415),
    ]
    for headers, body, status in attempts:
        response = await client.post("/v1/auth/verify-code", headers=headers, **body)
        assert response.status == status, headers
        assert "Set-Cookie" not in response.headers
    # The refused attempts did not spend the code: the real login still works.
    response = await client.post("/v1/auth/verify-code", json={"email": user.email, "code": code},
                                 headers={"Origin": own_origin(client)})
    assert response.status == 200
    assert "token=" in response.headers["Set-Cookie"]


async def test_the_refusals_are_the_documented_answers(client):
    reference = Reference(openapi.document())
    _, cookie, _ = await session(client)
    response = await client.post("/v1/devices", json=DEVICE, headers={**cookie, "Origin": EVIL})
    assert response.status == 403
    await reference.check_component(response, "CrossSiteRefused")
    response = await client.post("/v1/devices", data=DEVICE_TEXT,
                                 headers={**cookie, "Content-Type": "text/plain"})
    assert response.status == 415
    await reference.check_component(response, "NotJson")
