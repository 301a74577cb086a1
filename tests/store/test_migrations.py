"""Schema upgrades as an operator meets them: a database of release 0.1 (the last before
versions were recorded), holding real rows, upgraded in place by `migrate` on both engines."""

import os
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest

from owlmetry.clock import iso_ms, now_ms
from owlmetry.credentials import UserTokens
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from owlmetry.store import PushRecord, StoreError, latest_version, open_store
from owlmetry.store.schema import migrations
from tests.http.test_auth import make_key

RELEASE_0_1 = (Path(__file__).parent / "schema_0_1.sql").read_text()
T0 = 1_700_000_000_000
DAY = 24 * 60 * 60 * 1000
USER, OTHER = str(uuid.uuid4()), str(uuid.uuid4())
# Row ids are uuids, as routes take no other: d1..d3 devices, n1..n5 notifications.
D1, D2, D3, N1, N2, N3, N4, N5, N6 = (str(uuid.uuid4()) for _ in range(9))
# What release 0.1 wrote, table by table, in its own columns.
ROWS_0_1 = {
    "users": [(USER, "alice@example.com", T0), (OTHER, "bob@example.com", T0 + 1)],
    "api_keys": [("k1", "server", "producer", "ab" * 32, T0, None)],
    "user_devices": [
        (D1, USER, "ios_push", "a1" * 32, "production", "1.4", "iPhone16,2", "18.1", T0 + 5, T0),
        (D2, USER, "ios_push", "b2" * 32, "sandbox", None, None, None, T0 + 6, T0 + 6),
        (D3, OTHER, "ios_push", "c3" * 32, "production", None, None, None, T0 + 7, T0 + 7),
    ],
    "notifications": [
        (N1, USER, "feedback.new", "Unread", "b", "/f/1", '{"k": 1}', None, None, None, T0 + 10),
        (N2, USER, "feedback.new", "Read", None, None, None, "t1", T0 + 20, None, T0 + 11),
        (N3, USER, "issue.new", "Deleted", None, None, None, None, None, T0 + 21, T0 + 12),
        (N4, OTHER, "feedback.new", "Queued", None, None, None, None, None, None, T0 + 13),
        # N1's request reached OTHER too (same content, same time): one content for both.
        (N5, OTHER, "feedback.new", "Unread", "b", "/f/1", '{"k": 1}', None, None, None, T0 + 10),
        # Not N1's: a body where N1's link is (NULL is a value of its own).
        (N6, OTHER, "feedback.new", "Unread", "b", None, '{"k": 1}', None, None, None, T0 + 10),
    ],
    "notification_deliveries": [
        (N1, "ios_push", "sent", None, 1, "dispatcher-a", T0 + 30, T0 + 10, T0 + 30),
        (N2, "ios_push", "failed", "no device accepted it (1 failed)", 6, "dispatcher-a",
         T0 + 40, T0 + 11, T0 + 40),
        (N4, "ios_push", "pending", None, 0, None, T0 + 13, T0 + 13, None),
    ],
    "notification_pushes": [
        (N1, D1, "ios_push", "delivered", 200, None, T0 + 30),
        (N2, D2, "ios_push", "failed", 400, "BadTopic", T0 + 40),
    ],
    "login_codes": [("c1", "alice@example.com", "ff" * 32, 1, T0, T0 + 600_000, None)],
    "settings": [("jwt_secret", "a-secret-release-0.1-made-itself-long-enough")],
}
OLD_SECRET = ROWS_0_1["settings"][0][1]


# Each notification as it reads after migration 8, its content through the join.
NOTIFICATIONS_WITH_CONTENT = """
SELECT n.id, n.user_id, c.type, c.title, c.body, c.link, c.data, c.team_id, n.read_at,
       n.deleted_at, n.created_at
FROM notifications AS n JOIN notification_contents AS c ON c.id = n.content_id
"""


def upgraded(table: str, row: tuple) -> tuple | None:
    """A release 0.1 row as the upgrade leaves it (migration 3): devices keep the channel they
    registered with and are iOS (`platform`, added last); pushes go out on `mobile_push`. The
    signing secret leaves the database (migration 6): None."""
    if table == "settings" and row[0] == "jwt_secret":
        return None
    if table == "user_devices":
        return (*row, "ios")
    channel = {"notification_deliveries": 1, "notification_pushes": 2}.get(table)
    if channel is None:
        return row
    assert row[channel] == "ios_push"
    return (*row[:channel], "mobile_push", *row[channel + 1:])


async def run_script(database_url: str, script: str) -> None:
    if database_url.startswith("sqlite"):
        # As release 0.1 made it: with the umask's mode, readable by every local user.
        path = database_url[len("sqlite:///"):]
        with sqlite3.connect(path) as db:
            db.executescript(script)
        os.chmod(path, 0o644)
        return
    db = await asyncpg.connect(database_url)
    try:
        await db.execute(script)
    finally:
        await db.close()


def insert(table: str, row: tuple) -> str:
    values = ", ".join("NULL" if v is None else str(v) if isinstance(v, int)
                       else "'" + v.replace("'", "''") + "'" for v in row)
    return f"INSERT INTO {table} VALUES ({values});"


async def build_release_0_1(database_url: str, rows: dict | None = None) -> None:
    """A database as release 0.1 left it: its schema, its schema digest, and `rows`; its
    SQLite file made private, as the README's upgrade notes ask."""
    statements = [insert(table, row) for table, table_rows in (rows or {}).items()
                  for row in table_rows]
    await run_script(database_url, "\n".join([
        RELEASE_0_1, "INSERT INTO settings VALUES ('schema_sha256', 'digest-of-release-0.1');",
        *statements]))
    if database_url.startswith("sqlite"):
        os.chmod(database_url[len("sqlite:///"):], 0o600)


async def schema_shape(store) -> dict:
    """Tables' columns (name, type, not null, default) and indexes, as the engine describes
    them: two databases of the same schema have the same shape, however they got it."""
    if store.engine.name == "sqlite":
        tables = [name for (name,) in await store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        shape = {table: sorted(tuple(column[1:]) for column in await store.execute(
            f"SELECT * FROM pragma_table_info('{table}')")) for table in tables}
        shape["indexes"] = sorted(await store.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"))
        return shape
    columns = await store.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = current_schema()")
    shape = {}
    for table, *column in sorted(columns):
        shape.setdefault(table, []).append(tuple(column))
    shape["indexes"] = sorted(await store.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"))
    shape["constraints"] = sorted(await store.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = current_schema()::regnamespace"))
    return shape


async def recorded_versions(store) -> list[int]:
    return [v for (v,) in await store.execute(
        "SELECT version FROM schema_migrations ORDER BY version")]


async def test_a_new_database_records_every_version(store):
    assert await recorded_versions(store) == [m.version for m in migrations()]
    assert latest_version() == migrations()[-1].version >= 2


async def test_a_release_0_1_database_upgrades_in_place_and_loses_nothing(database_url):
    await build_release_0_1(database_url, ROWS_0_1)
    store = await open_store(database_url)
    try:
        await store.migrate()
        assert await recorded_versions(store) == [m.version for m in migrations()]
        for table, rows in ROWS_0_1.items():
            expected = [kept for row in rows if (kept := upgraded(table, row)) is not None]
            width = len(expected[0]) if expected else len(rows[0])
            kept = await store.execute(NOTIFICATIONS_WITH_CONTENT if table == "notifications"
                                       else f"SELECT * FROM {table}")
            assert sorted(row[:width] for row in kept) == sorted(expected), table
        # Migration 8: one content per request, not per recipient.
        assert await store.execute("SELECT count(*) FROM notification_contents") == [(5,)]
        assert await store.execute(
            "SELECT count(DISTINCT content_id) FROM notifications WHERE id IN ($1, $2)",
            N1, N5) == [(1,)]
        # Migration 14: no foreign keys left to cascade; deleting a user still takes every
        # row of theirs and nothing of anyone else's.
        assert await store.delete_user(USER)
        for table, rows in ROWS_0_1.items():
            if table in ("users", "user_devices", "notifications", "notification_deliveries",
                         "notification_pushes"):
                kept = await store.execute(f"SELECT * FROM {table}")
                assert sorted(row[0] for row in kept) == sorted(
                    row[0] for row in rows if row[0] not in (USER, D1, D2, N1, N2, N3)
                    and (len(row) < 2 or row[1] != USER)), table
        assert await store.execute("SELECT user_id FROM unread_counts") == [(OTHER,)]
        assert await store.execute("SELECT count(*) FROM notification_contents") == [(3,)]
        # Migration 6: the signing secret is no longer in the database (nor is the digest).
        assert await store.execute("SELECT * FROM settings") == []
    finally:
        await store.close()


async def test_a_world_readable_release_0_1_file_is_refused_until_made_private(tmp_path):
    path = tmp_path / "owlmetry.db"
    await run_script(f"sqlite:///{path}", RELEASE_0_1)
    with pytest.raises(StoreError) as refused:
        await open_store(f"sqlite:///{path}")
    assert str(refused.value).endswith(f"chmod 600 {path}")
    os.chmod(path, 0o600)
    store = await open_store(f"sqlite:///{path}")
    await store.close()


async def test_the_upgraded_database_serves_every_route(config, aiohttp_client):
    await build_release_0_1(config.database_url, ROWS_0_1)
    client = await aiohttp_client(create_app(config))
    # Sessions signed with the secret the database held end with the upgrade.
    old = UserTokens(OLD_SECRET).issue(USER, "alice@example.com")
    answer = await client.get("/v1/devices", headers={"Authorization": f"Bearer {old}"})
    assert (answer.status, await answer.json()) == (401, {"error": "Invalid token"})
    token = client.app[TOKENS].issue(USER, "alice@example.com")
    headers = {"Authorization": f"Bearer {token}"}

    devices = (await (await client.get("/v1/devices", headers=headers)).json())["devices"]
    assert [d["id"] for d in devices] == [D2, D1]
    assert {(d["channel"], d["platform"]) for d in devices} == {("ios_push", "ios")}
    inbox = await (await client.get("/v1/notifications?read_state=all",
                                    headers=headers)).json()
    assert [n["id"] for n in inbox["notifications"]] == [N2, N1]
    assert inbox["notifications"][1] == {
        "id": N1, "type": "feedback.new", "title": "Unread", "body": "b", "link": "/f/1",
        "team_id": None, "read_at": None, "created_at": "2023-11-14T22:13:20.010Z"}
    assert await (await client.get("/v1/notifications/unread-count", headers=headers)).json() \
        == {"count": 1}
    answer = await client.post("/v1/devices", headers=headers, json={
        "channel": "ios_push", "token": "a1" * 32, "environment": "sandbox"})
    assert answer.status == 201 and (await answer.json())["device"]["id"] == D1
    assert (await client.delete(f"/v1/notifications/{N1}", headers=headers)).status == 200
    me = await (await client.get("/v1/auth/me", headers=headers)).json()
    assert me["user"]["preferences"] == {"notifications": {"types": {}}}
    email_on = {"preferences": {"notifications": {"types": {"issue.new": {"email": True}}}}}
    assert (await client.patch("/v1/auth/me", headers=headers, json=email_on)).status == 200
    # Login (migration 7): release 0.1's code stays as it was, unsealed and never mailed again;
    # a new ask keeps a sealed code beside it.
    assert (await client.post("/v1/auth/send-code", json={"email": "alice@example.com"})).status \
        == 200
    codes = await client.app[STORE].execute(
        "SELECT id = 'c1', code_sealed IS NOT NULL, mails_sent FROM login_codes ORDER BY 1")
    assert [(bool(old), bool(sealed)) for old, sealed, _ in codes] == [(False, True), (True, False)]
    assert codes[1][2] == 0
    # Idempotency keys (migration 10): a retry answers the first request's ids.
    producer = {"Authorization": f"Bearer {await make_key(client.app, 'server')}",
                "Idempotency-Key": "upgrade-1"}
    asked = {"user_ids": [USER, OTHER], "type": "t", "title": "After the upgrade"}
    answers = [await (await client.post("/v1/notifications", headers=producer, json=asked)).json()
               for _ in range(2)]
    assert answers[0] == answers[1] and len(answers[0]["notification_ids"]) == 2
    # Scheduled sends (migration 11): held for release 0.1's user, and cancelled.
    key = {"Authorization": f"Bearer {await make_key(client.app, 'server')}"}
    answer = await client.post("/v1/notifications", headers=key, json={
        "user_ids": [USER], "type": "t", "title": "Later",
        "send_at": iso_ms(now_ms() + 3_600_000)})
    assert answer.status == 202
    (scheduled,) = (await answer.json())["notification_ids"]
    answer = await client.post(f"/v1/notifications/{scheduled}/cancel", headers=key)
    assert (answer.status, (await answer.json())["state"]) == (200, "cancelled")
    # Migration 12: answers recorded before it read as the producer's status, what was not
    # kept then shown as null; dead tokens are audited from now on.
    server = await make_key(client.app, "server")
    answer = await client.get(f"/v1/notifications/{N2}/deliveries",
                              headers={"Authorization": f"Bearer {server}"})
    status = await answer.json()
    assert answer.status == 200
    assert status["notification"]["channels"][0]["devices"]["failed"] == 1
    assert status["devices"] == [{
        "notification_id": N2, "device_id": D2, "channel": "mobile_push", "platform": "ios",
        "environment": "sandbox", "outcome": "failed", "status": 400, "reason": "BadTopic",
        "apns_id": None, "attempts": 1, "first_attempt_at": None,
        "answered_at": "2023-11-14T22:13:20.040Z", "removal": None}]
    await client.app[STORE].save_outcomes("me", [PushRecord(
        N1, D1, "mobile_push", "removed", 400, "BadDeviceToken")], [], T0 + 50)
    assert [r.device_id for r in await client.app[STORE].device_removals(0, "", 10)] == [D1]
    assert (await client.get("/healthz")).status == 200


async def test_upgraded_and_new_databases_have_the_same_schema(database_url, tmp_path):
    await build_release_0_1(database_url)
    upgraded = await open_store(database_url)
    try:
        await upgraded.migrate()
        upgraded_shape = await schema_shape(upgraded)
        if upgraded.engine.name == "postgresql":
            await upgraded.execute("DROP SCHEMA public CASCADE")
            await upgraded.execute("CREATE SCHEMA public")
            new_url = database_url
        else:
            new_url = f"sqlite:///{tmp_path}/new.db"
    finally:
        await upgraded.close()
    new = await open_store(new_url)
    try:
        await new.migrate()
        assert await schema_shape(new) == upgraded_shape
    finally:
        await new.close()


async def test_migrate_again_changes_nothing(store):
    before = await recorded_versions(store)
    await store.migrate()
    assert await recorded_versions(store) == before


# Migration 15: the status and outcome rules, as comparisons.
DELIVERY_ROW = ("INSERT INTO notification_deliveries (notification_id, channel, status, "
                "available_at, created_at) VALUES ($2, 'mobile_push', $1, 0, 0)")
PUSH_ROW = ("INSERT INTO notification_pushes (notification_id, device_id, channel, outcome, "
            "answered_at) VALUES ('n15', $2, 'mobile_push', $1, 0)")


@pytest.mark.parametrize("made", ["new", "upgraded"])
async def test_status_rules_keep_their_values_and_build_no_list_per_row(database_url, made):
    if made == "upgraded":
        await build_release_0_1(database_url)
    store = await open_store(database_url)
    try:
        await store.migrate()
        for status in ("pending", "sent", "failed", "skipped"):
            await store.execute(DELIVERY_ROW, status, f"n-{status}")
        for outcome in ("delivered", "removed", "failed", "skipped"):
            await store.execute(PUSH_ROW, outcome, f"d-{outcome}")
        for refused, value in ((DELIVERY_ROW, "sending"), (PUSH_ROW, "pending")):
            with pytest.raises(Exception, match="(?i)check constraint"):
                await store.execute(refused, value, "d-refused")
        assert await store.execute("SELECT count(*) FROM notification_deliveries") == [(4,)]
        assert await store.execute("SELECT count(*) FROM notification_pushes") == [(4,)]
        if store.engine.name == "sqlite":
            # An `IN` list in a CHECK is a temporary b-tree SQLite builds for each row.
            for statement in (DELIVERY_ROW, PUSH_ROW):
                program = await store.execute(f"EXPLAIN {statement}", "sent", "d")
                assert "OpenEphemeral" not in {row[1] for row in program}
    finally:
        await store.close()


async def table_names(database_url: str) -> set[str]:
    store = await open_store(database_url)
    try:
        if store.engine.name == "sqlite":
            return {name for (name,) in await store.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {name for (name,) in await store.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    finally:
        await store.close()


async def refused_migration(database_url: str) -> str:
    store = await open_store(database_url)
    try:
        with pytest.raises(StoreError) as refused:
            await store.migrate()
        return str(refused.value)
    finally:
        await store.close()


@pytest.mark.parametrize("script", [
    # Most applications have a `users` table; many keep `schema_migrations` (Rails, golang-migrate).
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'x');",
    "CREATE TABLE schema_migrations (version VARCHAR(20) PRIMARY KEY); "
    "INSERT INTO schema_migrations VALUES ('20231201120000');",
], ids=["users", "schema_migrations"])
async def test_another_applications_database_is_refused_and_left_as_it_was(database_url, script):
    await run_script(database_url, script)
    if database_url.startswith("sqlite"):
        os.chmod(database_url[len("sqlite:///"):], 0o600)
    before = await table_names(database_url)

    assert "this is not an Owlmetry database" in await refused_migration(database_url)
    assert await table_names(database_url) == before
    store = await open_store(database_url)
    try:
        table = "users" if "users" in before else "schema_migrations"
        assert len(await store.execute(f"SELECT * FROM {table}")) == 1
    finally:
        await store.close()


async def test_a_database_a_newer_release_upgraded_is_refused(database_url):
    store = await open_store(database_url)
    try:
        await store.migrate()
        newer = latest_version() + 1
        await store.execute(f"INSERT INTO schema_migrations (version, name, applied_at) "
                            f"VALUES ({newer}, 'from_a_newer_release', {now_ms()})")
    finally:
        await store.close()

    reason = await refused_migration(database_url)
    assert f"schema version {latest_version() + 1}, newer than this release's" in reason
    assert "restore the backup" in reason


async def test_a_postgresql_role_without_the_privileges_is_told_what_it_needs(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's roles")
    role = f"reader_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN")
        await owner.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                            f"GRANT USAGE ON SCHEMA public TO {role}")
        as_role = database_url.replace("://owlmetry@", f"://{role}@", 1)
        assert as_role != database_url

        # A new database the role may not create tables in; nothing is made.
        reason = await refused_migration(as_role)
        assert reason.startswith("the role in DATABASE_URL lacks a privilege: permission "
                                 "denied for schema public")
        assert await table_names(database_url) == set()

        # Made by its owner: the role that may not read its tables is told so.
        store = await open_store(database_url)
        await store.migrate()
        await store.close()
        reason = await refused_migration(as_role)
        assert "lacks a privilege: permission denied for table schema_migrations" in reason

        # Allowed to read and write them, it serves a current schema (nothing to create).
        await owner.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
                            f"public TO {role}")
        store = await open_store(as_role)
        try:
            await store.migrate()
            user = await store.create_user(str(uuid.uuid4()), "role@example.com", now_ms())
            assert user.email == "role@example.com"
        finally:
            await store.close()
    finally:
        await owner.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await owner.close()
