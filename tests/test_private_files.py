"""Who can read what the server keeps: the SQLite database, its side files and backups are
0600 whatever the umask, a database other users can reach is refused, and the signing secret
is never in the database (a copy of it cannot mint a session)."""

import contextlib
import os
import sqlite3
import stat

import jwt
import pytest

from owlmetry.clock import now_ms
from owlmetry.config import ConfigError, from_env
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from owlmetry.store import open_store
from tests.test_cli import ok, run


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def refusal(result) -> str:
    """The one line a refused command printed."""
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


async def test_the_database_its_wal_and_shm_and_the_key_file_are_made_0600(tmp_path, aiohttp_client):
    path = tmp_path / "owlmetry.db"
    with umask(0o022):
        client = await aiohttp_client(create_app(from_env({"DATABASE_URL": f"sqlite:///{path}"})))
        await client.app[STORE].create_user("u1", "a@example.com", now_ms())
        files = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert files == {"owlmetry.db": 0o600, "owlmetry.db-wal": 0o600, "owlmetry.db-shm": 0o600,
                     "owlmetry.db.key": 0o600}


def test_a_backup_is_made_0600(tmp_path):
    database = f"sqlite:///{tmp_path}/owlmetry.db"
    with umask(0o022):
        ok("users", "create", "b@example.com", "--database", database)
        ok("backup", str(tmp_path / "copy.db"), "--database", database)
    assert mode(tmp_path / "owlmetry.db") == 0o600
    assert mode(tmp_path / "copy.db") == 0o600


@pytest.mark.parametrize("side", ["", "-wal"])
def test_serve_refuses_a_database_other_users_can_read_and_says_the_chmod(tmp_path, side):
    path = tmp_path / "owlmetry.db"
    ok("migrate", "--database", f"sqlite:///{path}")
    exposed = f"{path}{side}"
    if side:  # as a crash of a release that made it with the umask leaves it
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode = WAL")
        (tmp_path / f"owlmetry.db{side}").touch()
    os.chmod(exposed, 0o644)
    line = refusal(run("serve", "--port", "1", "--database", f"sqlite:///{path}", cwd=tmp_path))
    assert "other users" in line and "0644" in line
    assert line.rstrip().endswith(f"chmod 600 {exposed}")
    assert not (tmp_path / "owlmetry.db.key").exists()


def test_a_group_readable_database_is_the_operators_choice(tmp_path):
    # As PostgreSQL's group mode: group read is allowed, group write or anything for others not.
    path = tmp_path / "owlmetry.db"
    ok("migrate", "--database", f"sqlite:///{path}")
    os.chmod(path, 0o640)
    ok("migrate", "--database", f"sqlite:///{path}")
    os.chmod(path, 0o660)
    assert "chmod 600" in refusal(run("migrate", "--database", f"sqlite:///{path}"))


@pytest.mark.parametrize("make,kind", [(os.mkdir, "a directory"),
                                       (os.mkfifo, "a pipe")])
def test_a_database_or_key_file_that_is_no_file_is_refused_without_a_chmod(tmp_path, make, kind):
    # Never "chmod 600 /tmp" or "/dev/null": the refusal says what the path is instead.
    path = tmp_path / "owlmetry.db"
    make(path)
    line = refusal(run("migrate", "--database", f"sqlite:///{path}"))
    assert line.rstrip().endswith(f"{path} is {kind}, not a file") and "chmod" not in line
    key = tmp_path / "secret.key"
    make(key)
    database = f"sqlite:///{tmp_path}/other.db"
    line = refusal(run("users", "token", "k@example.com", "--database", database,
                       env={"SECRET_KEY_FILE": str(key)}))
    assert line.rstrip().endswith(f"{key} is {kind}, not a file") and "chmod" not in line
    line = refusal(run("migrate", "--database", "sqlite:////dev/null"))
    assert "/dev/null is a device, not a file" in line and "chmod" not in line


def test_a_key_file_others_can_read_or_too_short_is_refused(tmp_path):
    database = f"sqlite:///{tmp_path}/owlmetry.db"
    ok("users", "create", "k@example.com", "--database", database)
    key = tmp_path / "owlmetry.db.key"
    ok("users", "token", "k@example.com", "--database", database)
    os.chmod(key, 0o640)
    line = refusal(run("users", "token", "k@example.com", "--database", database))
    assert line.rstrip().endswith(f"chmod 600 {key}")
    key.unlink()
    key.write_text("short\n")
    os.chmod(key, 0o600)
    assert "at least 32 bytes" in refusal(run("serve", "--database", database, cwd=tmp_path))


def test_secret_key_file_names_where_the_secret_lives(tmp_path):
    database = f"sqlite:///{tmp_path}/owlmetry.db"
    ok("users", "create", "f@example.com", "--database", database)
    key = tmp_path / "keys" / "jwt.key"
    key.parent.mkdir()
    token = ok("users", "token", "f@example.com", "--database", database,
               env={"SECRET_KEY_FILE": str(key)})
    assert mode(key) == 0o600 and not (tmp_path / "owlmetry.db.key").exists()
    jwt.decode(token, key.read_text().strip(), algorithms=["HS256"])


@pytest.mark.parametrize("secret", ["short", "x" * 31, "é" * 15])
def test_a_jwt_secret_shorter_than_32_bytes_is_refused_at_start(tmp_path, secret):
    with pytest.raises(ConfigError, match="JWT_SECRET must be at least 32 bytes"):
        from_env({"JWT_SECRET": secret})
    line = refusal(run("serve", env={"JWT_SECRET": secret}, cwd=tmp_path))
    assert f"JWT_SECRET must be at least 32 bytes long, not {len(secret.encode())}" in line
    assert list(tmp_path.iterdir()) == []
    assert from_env({"JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32


def test_jwt_secret_and_secret_key_file_together_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        from_env({"JWT_SECRET": "x" * 32, "SECRET_KEY_FILE": "/etc/owlmetry/jwt.key"})


async def test_postgresql_needs_a_secret_from_outside_the_database(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's key file is beside the database")
    line = refusal(run("serve", "--database", database_url, cwd=tmp_path))
    assert "JWT_SECRET" in line and "SECRET_KEY_FILE" in line
    ok("users", "create", "pg@example.com", "--database", database_url)
    token = ok("users", "token", "pg@example.com", "--database", database_url,
               env={"SECRET_KEY_FILE": str(tmp_path / "jwt.key")})
    assert mode(tmp_path / "jwt.key") == 0o600 and token


async def every_text_in(store) -> list[str]:
    """Every text value of every table: what a copy of the database (or a read-only role) has."""
    if store.engine.name == "sqlite":
        tables = [t for (t,) in await store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [t for (t,) in await store.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    return [value for table in tables for row in await store.execute(f"SELECT * FROM {table}")
            for value in row if isinstance(value, str)]


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # every short text is tried too
async def test_nothing_in_a_copy_of_the_database_signs_a_session(config, aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    user = await store.create_user("0b5e7c1e-0000-4000-8000-000000000001", "c@example.com",
                                   now_ms())
    token = client.app[TOKENS].issue(user.id, user.email)
    assert (await client.get("/v1/devices", headers={"Authorization": f"Bearer {token}"})
            ).status == 200
    if store.engine.name == "sqlite":  # the copy an attacker would take
        await store.backup(str(tmp_path / "stolen.db"))
        copy = await open_store(f"sqlite:///{tmp_path}/stolen.db")
    else:
        copy = store
    try:
        assert await copy.execute("SELECT * FROM settings") == []
        texts = await every_text_in(copy)
    finally:
        if copy is not store:
            await copy.close()
    assert user.id in texts  # the copy is a real one
    for text in texts:
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, text, algorithms=["HS256"])


def test_an_existing_key_file_is_only_read(tmp_path):
    # Nothing is written beside it, so it may live in a folder the server cannot write (/etc).
    database = f"sqlite:///{tmp_path}/owlmetry.db"
    ok("users", "create", "ro@example.com", "--database", database)
    folder = tmp_path / "etc"
    folder.mkdir()
    key = folder / "jwt.key"
    key.write_text("k" * 40 + "\n")
    os.chmod(key, 0o400)
    before = os.stat(folder).st_mtime_ns
    token = ok("users", "token", "ro@example.com", "--database", database,
               env={"SECRET_KEY_FILE": str(key)})
    assert os.stat(folder).st_mtime_ns == before
    jwt.decode(token, "k" * 40, algorithms=["HS256"])
