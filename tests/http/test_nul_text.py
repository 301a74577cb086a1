"""Text with a NUL character: PostgreSQL refuses to store it and SQLite would cut it short, so
every route refuses it with a 400 before anything is written."""

from owlmetry.http.context import STORE
from tests.http.test_auth import make_key

NUL = "Text must not contain NUL characters (\\u0000)"


async def test_every_route_refuses_nul_in_text_and_stores_nothing(client, users):
    user_id, headers = await users.headers()
    secret = await make_key(client.app, "server")
    server = {"Authorization": f"Bearer {secret}"}
    attempts = [
        ("POST", "/v1/devices", headers,
         {"channel": "ios_push", "token": "ab" * 16, "app_version": "1\u00002"}),
        ("POST", "/v1/notifications", server,
         {"user_ids": [user_id], "type": "t", "title": "a\u0000b"}),
        ("POST", "/v1/notifications", server,
         {"user_ids": [user_id], "type": "t", "title": "t", "data": {"k": ["\u0000"]}}),
        ("POST", "/v1/notifications/mark-all-read", headers, {"type": "a\u0000"}),
        ("GET", "/v1/notifications?type=a%00b", headers, None),
    ]
    for method, path, auth, body in attempts:
        response = await client.request(method, path, headers=auth, json=body)
        assert (response.status, await response.json()) == (400, {"error": NUL}), path
    assert await client.app[STORE].list_devices(user_id) == []
    assert await client.app[STORE].unread_count(user_id) == 0


async def test_a_backslash_u0000_that_is_not_a_nul_is_fine(client, users):
    _, headers = await users.headers()
    response = await client.post("/v1/devices", headers=headers, json={
        "channel": "ios_push", "token": "ab" * 16, "app_version": "\\u0000"})
    assert response.status == 201
    assert (await response.json())["device"]["app_version"] == "\\u0000"
