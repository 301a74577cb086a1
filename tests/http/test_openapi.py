"""The API reference, owlmetry/http/openapi.json, held to the server's real answers (both backends).

Each tour calls its routes as a client would, with requests that succeed and requests that fail,
through `Reference.call`, which checks every answer against the document: its status is
documented for that path and method, its body validates against the documented schema
(JSON Schema 2020-12, `$ref`s resolved in the document), its required headers are there. A JSON
body or query sent must validate against the documented request schema when the server takes it,
and must not when the server answers 400 for it (unless told that no schema can see the rule).
Each tour ends by checking it met every status its operations document, and together the tours
cover every documented operation. The router and the document must list the same routes.
"""

import functools
import re
import socket
import uuid

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import owlmetry
from owlmetry.clock import iso_ms, now_ms
from owlmetry.config import Config, SmtpSettings
from owlmetry.http import openapi
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.http.health import HEALTH
from owlmetry.store import DeviceChannel, Platform
from tests.http.test_auth import make_key
from tests.http.test_devices import body as device
from tests.http.test_inbox import MISSING, notify
from tests.http.test_login import clock, mailbox, make_client, new_user, wrong  # noqa: F401
from tests.http.test_producer import GOOD
from tests.smtp_server import SMTP_WARNING

URI = "urn:owlmetry:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NOTHING = object()
OVER_64_KIB = "x" * (64 * 1024)

PUBLIC = [("/healthz", "GET"), ("/metrics", "GET"), ("/openapi.json", "GET")]
LOGIN = [("/v1/auth/send-code", "POST"), ("/v1/auth/verify-code", "POST"),
         ("/v1/auth/logout", "POST"), ("/v1/auth/me", "GET"), ("/v1/auth/me", "PATCH")]
DEVICES = [("/v1/devices", "POST"), ("/v1/devices", "GET"), ("/v1/devices/{id}", "DELETE")]
INBOX = [("/v1/notifications", "GET"), ("/v1/notifications/unread-count", "GET"),
         ("/v1/notifications/mark-all-read", "POST"), ("/v1/notifications/{id}", "PATCH"),
         ("/v1/notifications/{id}", "DELETE")]
PRODUCER = [("/v1/notifications", "POST")]
SCHEDULING = [("/v1/notifications/{id}/cancel", "POST")]
DELIVERY_STATUS = [("/v1/notifications/{id}/deliveries", "GET"),
                   ("/v1/notifications/deliveries", "GET"),
                   ("/v1/notifications/deliveries", "POST")]


def escape(key: str) -> str:
    """A key as a JSON pointer spells it."""
    return key.replace("~", "~0").replace("/", "~1")


def documented_operations(spec: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in spec["paths"].items()
            for method in item if method in METHODS}


def all_refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


class Reference:
    """The document, the checks of a call against it, and the statuses the calls met."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.registry = Registry().with_resource(URI, DRAFT202012.create_resource(spec))
        self.seen: set[tuple[str, str, int]] = set()

    def at(self, pointer: str):
        node = self.spec
        for part in pointer.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part) if isinstance(node, list) else part]
        return node

    def locate(self, pointer: str) -> tuple[str, dict]:
        """Where `pointer` leads once its `$ref`s are followed, and what is there."""
        node = self.at(pointer)
        while "$ref" in node:
            pointer = node["$ref"]
            node = self.at(pointer)
        return pointer, node

    def parameters(self, operation: str) -> list[tuple[str, dict]]:
        """An operation's parameters, each with where it is once its `$ref` is followed."""
        return [self.locate(f"{operation}/parameters/{index}")
                for index in range(len(self.at(operation).get("parameters", [])))]

    def errors(self, schema_pointer: str, instance) -> list[str]:
        validator = Draft202012Validator({"$ref": URI + schema_pointer}, registry=self.registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(instance)]

    def template(self, path: str) -> str:
        """The documented path `path` falls under: a fixed one before one with `{id}`."""
        if path in self.spec["paths"]:
            return path
        for template in self.spec["paths"]:
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
                return template
        raise AssertionError(f"{path} is under no documented path")

    def on(self, client):
        """`call` on `client`."""
        return functools.partial(self.call, client)

    async def call(self, client, method: str, path: str, status: int, *, json=NOTHING,
                   data=None, params=None, headers=None, schema_sees_it: bool = True):
        """`method path` on `client`, which must answer `status`, checked against the
        document both ways; the answer and its decoded body."""
        template = self.template(path)
        operation = f"#/paths/{escape(template)}/{method.lower()}"
        assert method.lower() in self.spec["paths"][template], f"{method} {template} undocumented"
        self.check_request(operation, status, schema_sees_it, json, params or {})
        response = await client.request(method, path, headers=headers or {}, params=params,
                                        data=data, **({} if json is NOTHING else {"json": json}))
        assert response.status == status, (method, path, response.status, await response.text())
        assert str(status) in self.at(f"{operation}/responses"), (
            f"{method} {template} answered {status}, which its documentation does not list")
        self.seen.add((template, method, status))
        return response, await self.check_answer(f"{operation}/responses/{status}", response)

    def check_request(self, operation: str, status: int, schema_sees_it: bool, body, params):
        # Raw bytes (`data=`) are not JSON to judge: the JSON-body checks are the server's alone.
        judged = body is not NOTHING or bool(params)
        accepted, refused = 200 <= status < 300, status == 400 and schema_sees_it and judged
        errors = []
        if body is not NOTHING:
            where, _ = self.locate(f"{operation}/requestBody")
            errors += self.errors(f"{where}/content/application~1json/schema", body)
        documented = {parameter["name"]: (where, parameter)
                      for where, parameter in self.parameters(operation)
                      if parameter["in"] == "query"}
        for name, value in params.items():
            assert name in documented, f"query parameter {name} is not documented"
            where, parameter = documented[name]
            if parameter["schema"].get("type") == "integer" and re.fullmatch(r"-?[0-9]+", value):
                value = int(value)
            errors += self.errors(f"{where}/schema", value)
        if accepted:
            assert not errors, f"the server takes a request the document refuses: {errors}"
        if refused:
            assert errors, "the server refuses a request the document takes"

    async def check_answer(self, response_pointer: str, response):
        where, documented = self.locate(response_pointer)
        for name in documented.get("headers", {}):
            header_where, header = self.locate(f"{where}/headers/{escape(name)}")
            if header.get("required"):
                assert name in response.headers, f"{name} header missing"
                value = response.headers[name]
                if header["schema"].get("type") == "integer":
                    value = int(value)
                assert not self.errors(f"{header_where}/schema", value), (name, value)
        assert response.content_type in documented["content"], (
            f"answered {response.content_type}, documented {list(documented['content'])}")
        body = await (response.json() if response.content_type == "application/json"
                      else response.text())
        schema = f"{where}/content/{escape(response.content_type)}/schema"
        errors = self.errors(schema, body)
        assert not errors, f"the answer breaks {schema}: {errors}\n{body}"
        return body

    async def check_component(self, response, name: str) -> None:
        """An answer no single operation documents (404 for any path, 405), held to the
        components/responses entry the document's description points to."""
        await self.check_answer(f"#/components/responses/{name}", response)

    def assert_met_every_status(self, operations: list[tuple[str, str]]) -> None:
        for template, method in operations:
            documented = {int(status) for status in self.spec["paths"][template][method.lower()]
                          ["responses"]}
            met = {status for seen_template, seen_method, status in self.seen
                   if (seen_template, seen_method) == (template, method)}
            assert documented == met, (
                f"{method} {template}: documented {sorted(documented)}, met {sorted(met)}")


@pytest.fixture
def reference():
    return Reference(openapi.document())


def bearer(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


# ---- The document itself ----------------------------------------------------------------------


def test_the_document_is_openapi_3_1_and_every_reference_resolves():
    spec = openapi.document()
    reference = Reference(spec)
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"] == owlmetry.__version__
    for ref in all_refs(spec):
        assert ref.startswith("#/"), ref
        reference.at(ref)  # KeyError when it leads nowhere
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    schemes = spec["components"]["securitySchemes"]
    tags = {tag["name"] for tag in spec["tags"]}
    operation_ids = []
    for path, method in documented_operations(spec):
        pointer = f"#/paths/{escape(path)}/{method.lower()}"
        operation = reference.at(pointer)
        operation_ids.append(operation["operationId"])
        assert set(operation["tags"]) <= tags
        security = operation.get("security", spec.get("security"))
        assert security is not None, f"{method} {path} says nothing of credentials"
        assert {name for requirement in security for name in requirement} <= set(schemes)
        if security:  # a route that asks for credentials says what happens without them
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
        for status in operation["responses"]:
            assert re.fullmatch(r"[1-5][0-9][0-9]", status)
            assert reference.locate(f"{pointer}/responses/{status}")[1]["description"]
        declared = {parameter["name"] for _, parameter in reference.parameters(pointer)
                    if parameter["in"] == "path" and parameter["required"] is True}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
    assert len(operation_ids) == len(set(operation_ids))


def test_the_router_and_the_document_list_the_same_routes():
    app = create_app(Config(database_url="sqlite:///never-opened.db"))  # not started: no store
    routed = {(route.resource.canonical, route.method) for route in app.router.routes()
              if route.method != "HEAD"}
    documented = documented_operations(openapi.document())
    assert routed - documented == set(), "routes the document does not list"
    assert documented - routed == set(), "documented routes the server does not have"


def test_the_tours_below_call_every_documented_operation():
    assert set(PUBLIC + LOGIN + DEVICES + INBOX + PRODUCER + SCHEDULING
               + DELIVERY_STATUS) == documented_operations(
        openapi.document())


def test_the_documented_device_channels_and_platforms_are_the_servers():
    schemas = openapi.document()["components"]["schemas"]
    assert schemas["Channel"]["enum"] == list(DeviceChannel)
    assert schemas["Platform"]["enum"] == list(Platform)


# ---- The tours --------------------------------------------------------------------------------


async def test_public_routes_and_errors_of_any_path(client, reference):
    call = reference.on(client)
    await call("GET", "/healthz", 200)
    _, text = await call("GET", "/metrics", 200)
    assert "owlmetry_database_up 1.0" in text
    _, served = await call("GET", "/openapi.json", 200, headers=bearer("not-a-credential"))
    assert served == openapi.document() and served["info"]["version"] == owlmetry.__version__

    missing = await client.get("/v1/nothing-here")
    assert missing.status == 404
    await reference.check_component(missing, "NotFound")
    for method, path in (("PUT", "/v1/devices"), ("GET", f"/v1/notifications/{MISSING}")):
        wrong_method = await client.request(method, path)
        assert wrong_method.status == 405, (method, path)
        await reference.check_component(wrong_method, "MethodNotAllowed")

    client.app[HEALTH].every_s = 0  # probe again now, not a second later
    await client.app[STORE].close()  # the database is gone from under the server
    await call("GET", "/healthz", 503)
    reference.assert_met_every_status(PUBLIC)


@SMTP_WARNING
async def test_login_routes(make_client, mailbox, clock, reference):
    client = await make_client()
    call = reference.on(client)
    user = await new_user(client)
    send, verify, me = "/v1/auth/send-code", "/v1/auth/verify-code", "/v1/auth/me"
    await call("POST", send, 200, json={"email": user.email})
    (code,) = await mailbox.wait_for(user.email)
    await call("POST", send, 400, json={"email": "not-an-email"})
    await call("POST", send, 400, json={"email": "x,victim@example.com"})
    await call("POST", send, 400, json={"email": "a<victim@example.com>"})
    await call("POST", send, 400, json={"email": "a" * 65 + "@example.com"},
               schema_sees_it=False)  # a length of a part, which the pattern does not count
    await call("POST", send, 400, json={})
    await call("POST", send, 400, data=b"[1]")
    await call("POST", send, 413, json={"email": user.email, "pad": OVER_64_KIB})
    await call("POST", verify, 400, json={"email": user.email, "code": "12345"})
    await call("POST", verify, 400, json={"email": user.email})
    await call("POST", verify, 413, json={"email": user.email, "code": code, "pad": OVER_64_KIB})
    await call("POST", verify, 400, json={"email": "victim@example.com(1)", "code": code})
    await call("POST", verify, 401, json={"email": user.email, "code": wrong(code)})
    _, session = await call("POST", verify, 200, json={"email": user.email, "code": f" {code} "})
    assert session["user"]["id"] == user.id and session["is_new_user"] is False

    # The session cookie the client now holds opens /me, until logout clears it.
    await call("GET", me, 200)
    await call("GET", me, 200, headers=bearer(session["token"]))
    # Preferences, as the iOS app writes them: one type and channel at a time; and the
    # dashboard's own settings.
    email_on = {"preferences": {"notifications": {"types": {"issue.new": {"email": True}}}}}
    _, updated = await call("PATCH", me, 200, json=email_on)
    assert updated["user"]["preferences"]["notifications"]["types"] == {"issue.new": {"email": True}}
    await call("PATCH", me, 200, json={"preferences": {"notifications": {"types": {
        "issue.new": {"email": None}}}, "ui": {"dashboard": {"magnitudeWindowHours": 24}}}})
    await call("PATCH", me, 400, json={})
    await call("PATCH", me, 400, json={"preferences": {"notifications": {"types": {
        "issue.new": {"sms": True}}}}})
    await call("PATCH", me, 400, json={"preferences": {"notifications": {"types": {
        "issue.new": {"email": "yes"}}}}})
    await call("PATCH", me, 400, json={"preferences": {"notifications": {"types": {
        f"type.{n}": {"email": True} for n in range(201)}}}})
    await call("PATCH", me, 400, json={"preferences": {"ui": {"pad": "x" * 5000}}},
               schema_sees_it=False)  # a bound in bytes, which no schema measures
    await call("PATCH", me, 400, data=b"not json", headers={"Content-Type": "application/json"})
    await call("PATCH", me, 413, json={"preferences": {}, "pad": OVER_64_KIB})
    await call("GET", me, 200)

    await call("POST", "/v1/auth/logout", 200)
    await call("GET", me, 401)
    await call("PATCH", me, 401, json=email_on)
    await call("GET", me, 403, headers=bearer(await make_key(client.app, "server")))
    await call("PATCH", me, 403, headers=bearer(await make_key(client.app, "agent")),
               json=email_on)

    # Wrong codes for an email (an account's or not): past the fifth, a wait.
    stranger = {"email": "stranger@example.com"}
    for _ in range(5):
        await call("POST", verify, 401, json={**stranger, "code": "000000"})
    await call("POST", verify, 429, json={**stranger, "code": "000000"})

    # Too many codes asked for from one client address (sign-up closed: strangers count too).
    for _ in range(9):  # one asked above
        await call("POST", send, 200, json=stranger)
    await call("POST", send, 429, json=stranger)
    clock.advance(15 * 60 * 1000)  # the address's next window

    signup = reference.on(await make_client(signup_enabled=True))
    newcomer = "newcomer@example.com"
    await signup("POST", send, 200, json={"email": newcomer})
    (code,) = await mailbox.wait_for(newcomer)
    _, created = await signup("POST", verify, 201, json={"email": newcomer, "code": code})
    assert created["is_new_user"] is True

    with socket.socket() as closed:  # bound, not listening: the same answer, mail or not
        closed.bind(("127.0.0.1", 0))
        no_mail = await make_client(smtp=SmtpSettings("127.0.0.1", closed.getsockname()[1]))
        await reference.call(no_mail, "POST", send, 200, json={"email": user.email})
    reference.assert_met_every_status(LOGIN)


async def test_devices_api(client, users, reference):
    call = reference.on(client)
    _, user = await users.headers()
    server = bearer(await make_key(client.app, "server"))
    agent = bearer(await make_key(client.app, "agent"))
    _, registered = await call("POST", "/v1/devices", 201, headers=user, json=device(
        environment="sandbox", app_version="2.1.0", device_model="iPhone15,3",
        os_version="iOS 18.2"))
    await call("POST", "/v1/devices", 201, headers=user,
               json=device("ab" * 16, app_version=None, unknown_field=[1]))
    await call("POST", "/v1/devices", 201, headers=user, json=device(
        "cd" * 32, channel="mobile_push", platform="ios", environment="production"))
    await call("POST", "/v1/devices", 201, headers=user, json=device(
        "fcm:" + "Ab-_" * 36, channel="mobile_push", platform="android"))
    _, listed = await call("GET", "/v1/devices", 200, headers=user)
    assert len(listed["devices"]) == 4

    for refused in (device(channel="android_push"), device(token="zz" * 16), device(token=""),
                    device(app_version="x" * 51), device(environment=1), {"token": "ab" * 16},
                    device(channel="mobile_push"), device(channel="mobile_push", platform="web"),
                    device(platform="android"),
                    device("bad token", channel="mobile_push", platform="android")):
        await call("POST", "/v1/devices", 400, headers=user, json=refused)
    await call("POST", "/v1/devices", 400, headers=user, data=b"not json")
    await call("POST", "/v1/devices", 413, headers=user, json=device(padding=OVER_64_KIB))
    await call("POST", "/v1/devices", 401, json=device())
    await call("POST", "/v1/devices", 403, headers=agent, json=device())
    await call("GET", "/v1/devices", 401, headers={"Authorization": "Token x"})
    await call("GET", "/v1/devices", 403, headers=server)

    one = f"/v1/devices/{registered['device']['id']}"
    await call("DELETE", one, 401)
    await call("DELETE", one, 403, headers=server)
    await call("DELETE", one, 200, headers=user)
    await call("DELETE", one, 404, headers=user)
    await call("DELETE", "/v1/devices/not-a-uuid", 404, headers=user)
    reference.assert_met_every_status(DEVICES)


async def test_inbox(client, users, reference):
    call = reference.on(client)
    user_id, user = await users.headers()
    server = bearer(await make_key(client.app, "server"))
    first, *_ = await notify(client, user_id, count=3, body="In #general", link="/c/1",
                             team_id="team-1", data={"kept": "for the push"})
    await notify(client, user_id, type="mention")
    inbox, count = "/v1/notifications", "/v1/notifications/unread-count"
    mark, one = "/v1/notifications/mark-all-read", f"/v1/notifications/{first}"

    _, page = await call("GET", inbox, 200, headers=user, params={"limit": "2"})
    assert page["has_more"] is True
    _, rest = await call("GET", inbox, 200, headers=user,
                         params={"limit": "2", "cursor": page["cursor"]})
    assert rest["cursor"] is None and len(rest["notifications"]) == 2
    await call("GET", inbox, 200, headers=user, params={"read_state": "unread", "type": "comment"})
    await call("GET", inbox, 400, headers=user, params={"limit": "0"})
    await call("GET", inbox, 400, headers=user, params={"limit": "201"})
    await call("GET", inbox, 400, headers=user, params={"read_state": "new"})
    await call("GET", inbox, 400, headers=user, params={"cursor": "page-2"},
               schema_sees_it=False)  # what a cursor holds is the server's to read
    await call("GET", count, 200, headers=user)

    _, patched = await call("PATCH", one, 200, headers=user, json={"read": True})
    assert patched["notification"]["read_at"] is not None
    await call("PATCH", one, 200, headers=user, json={"read": False})
    await call("PATCH", one, 200, headers=user)  # no body: read
    await call("PATCH", one, 400, headers=user, json={"read": "yes"})
    await call("PATCH", one, 400, headers=user, data=b"[true]")
    await call("PATCH", one, 413, headers=user, json={"pad": OVER_64_KIB})
    await call("PATCH", f"/v1/notifications/{MISSING}", 404, headers=user)

    _, marked = await call("POST", mark, 200, headers=user, json={"type": "mention"})
    assert marked == {"marked": 1}
    await call("POST", mark, 200, headers=user, json={"type": None})
    await call("POST", mark, 200, headers=user)
    await call("POST", mark, 400, headers=user, json={"type": 5})
    await call("POST", mark, 413, headers=user, json={"pad": OVER_64_KIB})

    await call("DELETE", one, 200, headers=user)
    await call("DELETE", one, 404, headers=user)
    await call("DELETE", "/v1/notifications/unread", 404, headers=user)

    for method, path in (("GET", inbox), ("GET", count), ("POST", mark), ("PATCH", one),
                         ("DELETE", one)):
        await call(method, path, 401)
        await call(method, path, 403, headers=server)
    reference.assert_met_every_status(INBOX)


async def test_producer_route(client, users, reference):
    call = reference.on(client)
    first, user = await users.headers()
    second, _ = await users.create()
    server = bearer(await make_key(client.app, "server"))
    agent = bearer(await make_key(client.app, "agent"))
    route, good = "/v1/notifications", {**GOOD, "user_ids": [first]}

    _, accepted = await call("POST", route, 202, headers=server,
                             json={**GOOD, "user_ids": [first, second, str(uuid.uuid4())]})
    assert len(accepted["notification_ids"]) == 2
    await call("POST", route, 202, headers=server,
               json={"user_ids": [first], "type": "t", "title": "Only the required"})
    for change in ({"user_ids": []}, {"title": "x" * 257}, {"type": "  "}, {"data": [1, 2]},
                   {"body": ["no"]}):
        await call("POST", route, 400, headers=server, json={**good, **change})
    await call("POST", route, 400, headers=server, json={**good, "data": {"blob": "x" * 4000}},
               schema_sees_it=False)  # the APNs payload's size is the channel's rule
    await call("POST", route, 400, headers=server, data=b"{nope")
    await call("POST", route, 401, json=good)
    await call("POST", route, 403, headers=user, json=good)
    await call("POST", route, 403, headers=agent, json=good)
    await call("POST", route, 413, headers=server,
               json={**GOOD, "user_ids": ["x" * 100] * 45_000})  # over 4 MiB
    keyed = {**server, "Idempotency-Key": str(uuid.uuid4())}
    _, first_answer = await call("POST", route, 202, headers=keyed, json=good)
    replayed, again = await call("POST", route, 202, headers=keyed, json=good)
    assert again == first_answer and replayed.headers["Idempotent-Replayed"] == "true"
    await call("POST", route, 409, headers=keyed, json={**good, "title": "Another"})
    await call("POST", route, 400, headers={**server, "Idempotency-Key": "x" * 256}, json=good,
               schema_sees_it=False)  # a header's rule: the body is fine
    reference.assert_met_every_status(PRODUCER)


async def test_scheduled_sends_and_their_cancel_route(client, users, reference):
    call = reference.on(client)
    first, user = await users.headers()
    server = bearer(await make_key(client.app, "server"))
    agent = bearer(await make_key(client.app, "agent"))
    later = iso_ms(now_ms() + 3_600_000)

    _, accepted = await call("POST", "/v1/notifications", 202, headers=server,
                             json={**GOOD, "user_ids": [first], "send_at": later})
    assert accepted["send_at"] == later
    await call("POST", "/v1/notifications", 400, headers=server,
               json={**GOOD, "user_ids": [first], "send_at": "tomorrow"})
    await call("POST", "/v1/notifications", 400, headers=server, schema_sees_it=False,
               json={**GOOD, "user_ids": [first], "send_at": "2020-01-01T00:00:00Z"})

    cancel = f"/v1/notifications/{accepted['notification_ids'][0]}/cancel"
    for headers, status in ((None, 401), (user, 403), (agent, 403)):
        await call("POST", cancel, status, headers=headers)
    _, cancelled = await call("POST", cancel, 200, headers=server)
    assert cancelled["state"] == "cancelled" and cancelled["send_at"] == later
    await call("POST", cancel, 200, headers=server)
    _, now = await call("POST", "/v1/notifications", 202, headers=server,
                        json={**GOOD, "user_ids": [first]})
    await call("POST", f"/v1/notifications/{now['notification_ids'][0]}/cancel", 409,
               headers=server)
    await call("POST", f"/v1/notifications/{uuid.uuid4()}/cancel", 404, headers=server)
    reference.assert_met_every_status(SCHEDULING)


async def test_delivery_status_routes(client, users, reference):
    call = reference.on(client)
    user_id, user = await users.headers()
    server = bearer(await make_key(client.app, "server"))
    agent = bearer(await make_key(client.app, "agent"))
    (sent,) = (await call("POST", "/v1/notifications", 202, headers=server,
                          json={**GOOD, "user_ids": [user_id]}))[1]["notification_ids"]
    one, many = f"/v1/notifications/{sent}/deliveries", "/v1/notifications/deliveries"

    _, status = await call("GET", one, 200, headers=server, params={"limit": "1"})
    assert status["notification"]["id"] == sent
    await call("GET", one, 400, headers=server, params={"limit": "0"})
    await call("GET", one, 400, headers=server, params={"cursor": "nope"},
               schema_sees_it=False)  # a cursor's meaning is the server's
    await call("GET", one, 401)
    await call("GET", one, 403, headers=user)
    await call("GET", one, 403, headers=agent)
    await call("GET", f"/v1/notifications/{uuid.uuid4()}/deliveries", 404, headers=server)

    _, page = await call("GET", many, 200, headers=server,
                         params={"ids": f"{sent},nope", "limit": "1000"})
    assert page["unknown_ids"] == ["nope"]
    await call("GET", many, 400, headers=server, params={"ids": sent, "limit": "1001"})
    await call("GET", many, 401, params={"ids": sent})
    await call("GET", many, 403, headers=agent, params={"ids": sent})
    await call("POST", many, 200, headers=server, json={"ids": [sent], "limit": 2})
    await call("POST", many, 400, headers=server, json={"ids": []})
    await call("POST", many, 401, json={"ids": [sent]})
    await call("POST", many, 403, headers=user, json={"ids": [sent]})
    await call("POST", many, 413, headers=server, json={"ids": [OVER_64_KIB]})
    reference.assert_met_every_status(DELIVERY_STATUS)
