"""The `owlmetry` command as an operator runs it: real processes, real databases."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import jwt
import pytest

from owlmetry.cli import main
from tests.ports import free_port

UUID_LENGTH = 36


def run(*args, env=None, cwd=None):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DATABASE_URL", "JWT_", "APNS_", "COOKIE_", "ACCESS_",
                                  "SMTP_", "EMAIL_", "SIGNUP_", "RETENTION_"))}
    return subprocess.run(
        [sys.executable, "-m", "owlmetry", *args], check=False, capture_output=True, text=True,
        env={**clean, **(env or {})}, cwd=cwd, timeout=60,
    )


def secret_env(config) -> dict:
    """The environment `owlmetry` signs tokens with as the `config` server does (PostgreSQL
    keeps no secret; SQLite's key file is found beside the database)."""
    return {"SECRET_KEY_FILE": config.secret_key_file} if config.secret_key_file else {}


def ok(*args, **kwargs) -> str:
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_users_create_prints_an_id_and_refuses_a_taken_email(database_url):
    user_id = ok("users", "create", "alice@example.com", "--database", database_url)
    assert len(user_id) == UUID_LENGTH
    again = run("users", "create", "ALICE@example.com", "--database", database_url)
    assert again.returncode == 1
    assert again.stdout == ""
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("address", ["x,victim@example.com", "victim@example.com(1)",
                                     "a<victim@example.com>", "victim@example.com,",
                                     '"a b"@example.com', "a@[192.0.2.1]"])
async def test_users_create_takes_exactly_one_address(database_url, address):
    result = run("users", "create", address, "--database", database_url)
    assert result.returncode != 0 and result.stdout == ""
    assert "not a valid email address" in result.stderr and "Traceback" not in result.stderr
    notify = run("notify", "--user", address, "--title", "T", "--database", database_url)
    assert notify.returncode != 0 and "Traceback" not in notify.stderr


async def test_users_unlock_forgets_an_emails_wrong_codes(store, database_url):
    await store.execute("INSERT INTO login_failures VALUES ('locked@example.com', 100, 0, 0)")
    assert ok("users", "unlock", "Locked@Example.com", "--database", database_url) == "unlocked"
    assert await store.execute("SELECT * FROM login_failures") == []
    assert ok("users", "unlock", "locked@example.com", "--database", database_url) == \
        "no wrong codes on record"


async def test_users_delete_takes_the_users_inbox_with_it(store, database_url):
    user_id = ok("users", "create", "gone@example.com", "--database", database_url)
    ok("notify", "--user", "gone@example.com", "--title", "T", "--database", database_url)
    assert ok("users", "delete", "Gone@Example.com", "--database", database_url) == user_id
    for table in ("users", "notifications", "notification_deliveries", "unread_counts"):
        assert await store.execute(f"SELECT count(*) FROM {table}") == [(0,)], table
    again = run("users", "delete", "gone@example.com", "--database", database_url)
    assert again.returncode == 1 and again.stdout == ""
    assert "no user with email" in again.stderr and "Traceback" not in again.stderr


async def test_a_cli_token_works_on_the_server(client, config, database_url):
    user_id = ok("users", "create", "bob@example.com", "--database", database_url)
    token = ok("users", "token", "bob@example.com", "--database", database_url,
               env=secret_env(config))
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == user_id
    response = await client.get("/v1/devices", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200


async def test_token_ttl_sets_the_expiry(config, database_url):
    ok("users", "create", "carol@example.com", "--database", database_url)
    token = ok("users", "token", "carol@example.com", "--ttl", "60", "--database", database_url,
               env=secret_env(config))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60


async def test_jwt_secret_from_the_environment_signs_tokens(database_url):
    ok("users", "create", "dave@example.com", "--database", database_url)
    secret = "an-operator-chosen-secret-of-good-length"
    token = ok("users", "token", "dave@example.com", "--database", database_url,
               env={"JWT_SECRET": secret})
    assert jwt.decode(token, secret, algorithms=["HS256"])["email"] == "dave@example.com"


async def test_token_for_an_unknown_email_fails_clearly(config, database_url):
    result = run("users", "token", "nobody@example.com", "--database", database_url,
                 env=secret_env(config))
    assert result.returncode == 1
    assert "no user" in result.stderr


async def test_api_keys_are_created_listed_and_revoked(client, database_url):
    secret = ok("keys", "create", "--kind", "server", "--name", "deploy", "--database", database_url)
    assert secret.startswith("owl_server_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/v1/devices", headers=headers)).status == 403
    (key,) = json.loads(ok("keys", "list", "--database", database_url))
    assert key["kind"] == "server" and key["name"] == "deploy" and key["revoked_at"] is None
    assert secret not in json.dumps(key)
    assert ok("keys", "revoke", key["id"], "--database", database_url) == key["id"]
    assert (await client.get("/v1/devices", headers=headers)).status == 401
    assert run("keys", "revoke", key["id"], "--database", database_url).returncode == 1


async def test_agent_keys_have_their_prefix(database_url):
    assert ok("keys", "create", "--kind", "agent", "--database", database_url).startswith("owl_agent_")


@pytest.mark.parametrize("args,env,message", [
    (["migrate", "--database", "mysql://x"], {}, "unsupported database URL"),
    (["migrate"], {"DATABASE_URL": "sqlite:///"}, "unsupported database URL"),
    (["migrate", "--database", "sqlite:////no/such/folder/x.db"], {}, "does not exist"),
    (["migrate", "--database", "postgresql://u@127.0.0.1:1/db"], {}, "cannot connect to PostgreSQL"),
    (["migrate", "--database", "postgresql://u@127.0.0.1:99999/db"], {},
     "cannot connect to PostgreSQL: connect(): port must be 0-65535"),
    (["migrate", "--database", "postgresql://u@[::1/db"], {}, "cannot connect to PostgreSQL"),
    (["migrate"], {"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
    (["migrate"], {"APNS_CONNECTIONS": "lots"}, "APNS_CONNECTIONS"),
    (["migrate"], {"APNS_CONNECTIONS": "0"}, "APNS_CONNECTIONS"),
    (["migrate"], {"NOTIFY_LEASE_SECONDS": "1"}, "NOTIFY_LEASE_SECONDS must be from 2 to 3600"),
    (["notify", "--user", "a@b.c", "--title", "t"], {"NOTIFY_LEASE_SECONDS": "soon"},
     "NOTIFY_LEASE_SECONDS must be a whole number"),
    (["serve"], {"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS must be from 0 to 600"),
    (["migrate"], {"APNS_PRODUCTION_URL": "http://plain"}, "APNS_PRODUCTION_URL"),
    (["migrate"], {"APNS_CA_FILE": "/no/such/ca.pem"}, "APNS_CA_FILE"),
    (["migrate"], {"APNS_KEY_P8_PATH": "/no/such/key.p8"}, "APNS_KEY_P8_PATH"),
    (["migrate"], {"APNS_KEY_P8": "not a pem"}, "APNS_KEY_P8"),
    (["migrate"], {"SMTP_URL": "mail.example.com"}, "SMTP_URL must look like smtp://"),
    (["migrate"], {"SMTP_URL": "smtp://mail.example.com:port"}, "SMTP_URL"),
    (["migrate"], {"SMTP_URL": "smtp://mail.example.com?starttls=maybe"}, "starttls"),
    (["migrate"], {"EMAIL_FROM": "nobody"}, "EMAIL_FROM must be an email address"),
    (["migrate"], {"SIGNUP_ENABLED": "sometimes"}, "SIGNUP_ENABLED must be true or false"),
    (["serve", "--port", "70000"], {}, "--port"),
    (["serve", "--host", ""], {}, "--host must be an address to listen on"),
    (["serve", "--host", " "], {}, "--host must be an address to listen on"),
    (["serve"], {"TRUSTED_PROXIES": "127.0.0.1, proxy.local"}, "TRUSTED_PROXIES: 'proxy.local'"),
    (["migrate"], {"DATABASE_URL": "mysql://bob:hunter2@db/x"}, "'mysql://bob:***@db/x'"),
    (["serve", "--database", "postgresql://u@127.0.0.1:1/db"], {"JWT_SECRET": "s" * 32},
     "cannot connect to PostgreSQL"),
])
def test_bad_configuration_is_one_clear_line_and_exit_1(tmp_path, args, env, message):
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["keys", "create", "--kind", "admin"],
    ["users", "create", "not-an-email"],
    # A user the login routes could never let in is not made (the same rule, `owlmetry.emails`).
    ["users", "create", "eve\x01@example.com"],
    ["users", "create", "eve @example.com"],
    ["users", "token", "a@example.com", "--ttl", "-5"],
    ["users"],
    ["frobnicate"],
])
def test_bad_arguments_are_usage_errors(tmp_path, args):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_serve_starts_on_sqlite_with_no_configuration(tmp_path):
    port = free_port()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DATABASE_URL", "JWT_", "APNS_", "SMTP_", "FCM_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "owlmetry", "serve", "--port", str(port)],
        cwd=tmp_path, env=clean, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        startup = [server.stdout.readline() for _ in range(5)]
        # Without APNs credentials, an FCM service account or SMTP the server still runs, and
        # says what pushes and notification mail will not do, and where login codes go.
        assert "Android devices will be skipped: FCM is not configured: " \
            "FCM_SERVICE_ACCOUNT_PATH (or FCM_SERVICE_ACCOUNT) unset" in startup[0]
        assert "email deliveries will be skipped: SMTP_URL is not set" in startup[1]
        assert "mobile_push deliveries will be skipped: APNs is not configured: APNS_KEY_ID" in \
            startup[2]
        assert "SMTP_URL is not set: login codes are written to this log" in startup[3]
        assert "listening on" in startup[4]
        assert get_json(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert (tmp_path / "owlmetry.db").is_file()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        busy = run("serve", "--port", str(port), cwd=elsewhere)
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def serving(folder, port: int) -> subprocess.Popen:
    """`owlmetry serve` on the SQLite default in `folder`, once it listens."""
    server = subprocess.Popen(
        [sys.executable, "-m", "owlmetry", "serve", "--port", str(port)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items()
             if not k.startswith(("DATABASE_URL", "JWT_", "APNS_", "SMTP_", "FCM_"))})
    for line in server.stdout:
        if "listening on" in line:
            return server
    raise AssertionError(f"serve ended: {server.wait()}")


def test_a_second_server_on_one_sqlite_database_is_refused_until_the_first_is_gone(tmp_path):
    first = serving(tmp_path, free_port())
    try:
        second = run("serve", "--port", str(free_port()), cwd=tmp_path)
        assert second.returncode == 1
        assert (f"another owlmetry serve (pid {first.pid}) is using the SQLite database"
                in second.stderr)
        # The other commands run beside it.
        assert ok("users", "create", "beside@example.com", cwd=tmp_path)
        first.kill()  # a crash: the kernel lets go of the lock with the process
        first.wait(timeout=20)
        third = serving(tmp_path, free_port())
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=20) == 0
    finally:
        first.kill()
        first.wait(timeout=20)


async def test_backup_copies_a_live_sqlite_database_to_a_new_file(tmp_path, database_url):
    if not database_url.startswith("sqlite"):
        result = run("backup", str(tmp_path / "copy.db"), "--database", database_url)
        assert result.returncode == 1 and "pg_dump" in result.stderr
        assert not (tmp_path / "copy.db").exists()
        return
    user_id = ok("users", "create", "erin@example.com", "--database", database_url)
    key = ok("keys", "create", "--kind", "server", "--database", database_url)
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    assert ok("backup", str(copy), "--database", database_url) == str(copy)

    # The copy is a database of its own: the server's data is in it.
    restored = f"sqlite:///{copy}"
    assert ok("users", "token", "erin@example.com", "--database", restored)
    keys = json.loads(ok("keys", "list", "--database", restored))
    assert [k["kind"] for k in keys] == ["server"] and key not in json.dumps(keys)
    again = run("users", "create", "erin@example.com", "--database", restored)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert len(user_id) == UUID_LENGTH

    refused = run("backup", str(copy), "--database", database_url)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    missing = run("backup", str(tmp_path / "no" / "such.db"), "--database", database_url)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert "Traceback" not in refused.stderr + missing.stderr
    assert not [p.name for p in tmp_path.rglob("*.partial")], "a half-written backup was left"


async def test_cleanup_prints_its_counts_and_follows_the_configuration(database_url):
    from owlmetry.clock import now_ms
    from owlmetry.retention import DAY_MS
    from owlmetry.store import NotificationContent, open_store

    user_id = ok("users", "create", "erin@example.com", "--database", database_url)
    store = await open_store(database_url)
    try:
        month_ago = now_ms() - 31 * DAY_MS
        (read,) = await store.enqueue_notifications(
            [("0f6c3d1e-0000-4000-8000-000000000001", user_id)],
            NotificationContent("t", "Read a month ago"), [], month_ago)
        await store.set_read(user_id, read, True, month_ago)

        kept = ok("cleanup", "--database", database_url, env={"RETENTION_READ_DAYS": "0"})
        assert json.loads(kept) == {"soft_deleted": 0, "removed": 0, "login_codes": 0,
                                    "idempotency_keys": 0, "device_removals": 0}
        cleaned = ok("cleanup", "--database", database_url)
        assert json.loads(cleaned) == {"soft_deleted": 1, "removed": 0, "login_codes": 0,
                                       "idempotency_keys": 0, "device_removals": 0}

        if store.engine.name == "postgresql":
            async with store.retention_lock():
                busy = run("cleanup", "--database", database_url)
            assert busy.returncode == 1 and busy.stdout == ""
            assert "another process is running the clean-up" in busy.stderr
    finally:
        await store.close()


HOSTILE_ARGUMENTS = ["", " ", "-", "é", "x" * 5_000, "\x01", "null", "{", "[]", "1e309",
                     "99999999999999999999", "a@b", "@example.com", "2026-13-45", "../x"]


def hostile_commands(database_url: str, folder) -> list[list[str]]:
    """Every command, each argument in turn given each of HOSTILE_ARGUMENTS (`serve`: only
    ports and hosts it must refuse, since one it takes would start serving)."""
    db = ["--database", database_url]
    commands = [["serve", "--port", port, *db] for port in ("0", "-1", "70000", "port", "")]
    commands += [["serve", "--host", host, *db] for host in ("", " ", "\t")]
    for value in HOSTILE_ARGUMENTS:
        commands += [
            ["users", action, value, *db]
            for action in ("create", "token", "revoke-sessions", "delete", "unlock")]
        commands += [
            ["users", "token", "a@example.com", "--ttl", value, *db],
            ["keys", "create", "--kind", value, *db],
            ["keys", "create", "--kind", "server", "--name", value, *db],
            ["keys", "revoke", value, *db],
            ["notify", "--user", value, "--title", "t", *db],
            ["notify", "--user", "a@example.com", "--title", value, *db],
            ["notify", "--user", "a@example.com", "--title", "t", "--data", value, *db],
            ["notify", "--user", "a@example.com", "--title", "t", "--type", value, *db],
            ["notify", "--user", "a@example.com", "--title", "t", "--link", value, *db],
            ["devices", "removed", "--since", value, *db],
            ["backup", str(folder / "backups" / (value.replace("/", "_")[:100] or "empty")), *db],
            ["migrate", "--database", value],
        ]
    commands += [["migrate", "--database", url] for url in (
        "postgresql://u@127.0.0.1:99999/db", "postgresql://u@[::1/db", "postgresql://u@127.0.0.1:1/db",
        "postgresql://u@127.0.0.1:1/db?sslmode=bogus", "sqlite:///",
        "sqlite:////no/such/folder/x.db", "SQLITE:///x.db", "mysql://u@h/db")]
    return commands


def test_every_command_with_hostile_arguments_succeeds_or_says_why(
        database_url, tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith(("DATABASE_URL", "JWT_", "APNS_", "SMTP_", "FCM_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", "--database", database_url]) == 0
    assert main(["users", "create", "a@example.com", "--database", database_url]) == 0
    (tmp_path / "backups").mkdir()
    capsys.readouterr()
    for argv in hostile_commands(database_url, tmp_path):
        try:
            status = main(argv)
        except SystemExit as usage_error:  # argparse's
            status = usage_error.code
        out, err = capsys.readouterr()
        what = f"{argv[:4]}: {err[-300:]}"
        assert status in (0, 1, 2), what
        assert "Traceback" not in err + out, what
        if status == 1:
            assert err.startswith("owlmetry: error: ") and err.count("\n") == 1, what
        if status == 2:
            assert "usage:" in err, what
    # The user made first is still there: its address is taken.
    assert main(["users", "create", "a@example.com", "--database", database_url]) == 1
    assert "a@example.com" in capsys.readouterr().err
