"""Fixtures every test folder shares: the two databases, the app, users and their tokens.

Each store-backed test runs twice, on a fresh SQLite file and on a fresh PostgreSQL database
in a cluster the suite starts itself. Where no PostgreSQL binaries exist, those runs are
skipped, and the end of the run says so in capitals.
"""

import asyncio
import itertools
import signal
import uuid

import asyncpg
import pytest

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE, TOKENS
from owlmetry.store import open_store
from tests.keys import auth_key, tls_files  # noqa: F401  (fixtures for every folder)
from tests.postgres_cluster import find_bin_dir, start_cluster
from tests.provider_mocks import (  # noqa: F401  (fixtures for every folder)
    fcm_account,
    fcm_key,
    fcm_mock,
    mobile_push,
    mocks,
)

NO_POSTGRES = "PostgreSQL binaries (initdb, pg_ctl) not found: every PostgreSQL test was SKIPPED"
database_numbers = itertools.count()


def interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def postgres_cluster():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(NO_POSTGRES)
    # A run stopped by SIGTERM (a CI time-out, `timeout`) still tears the cluster down.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    cluster = start_cluster(bin_dir)
    yield cluster
    cluster.stop()


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if any(NO_POSTGRES in str(report.longrepr) for report in skipped):
        terminalreporter.write_sep("!", NO_POSTGRES.upper(), red=True, bold=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/owlmetry.db"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = f"test_{next(database_numbers)}"
    asyncio.run(admin_command(cluster, f"CREATE DATABASE {name}"))
    yield cluster.database_url(name)
    # FORCE: a test's server process may have been killed holding connections.
    asyncio.run(admin_command(cluster, f"DROP DATABASE {name} WITH (FORCE)"))


async def admin_command(cluster, sql: str) -> None:
    admin = await asyncpg.connect(cluster.url)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@pytest.fixture
async def store(database_url):
    store = await open_store(database_url)
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture
def config(database_url, tmp_path):
    # PostgreSQL keeps no signing secret: it comes from a key file (SQLite's is beside the file).
    if database_url.startswith("sqlite"):
        return Config(database_url=database_url)
    return Config(database_url=database_url, secret_key_file=str(tmp_path / "secret.key"))


@pytest.fixture
async def client(config, aiohttp_client):
    # `config` (so the database) first: it is torn down after the app that uses it stops.
    return await aiohttp_client(create_app(config))


class Users:
    """Makes users in the app's own store and JWTs signed with the app's own secret."""

    def __init__(self, app):
        self.app = app

    async def create(self, email: str | None = None) -> tuple[str, str]:
        email = email or f"{uuid.uuid4().hex[:12]}@example.com"
        user = await self.app[STORE].create_user(str(uuid.uuid4()), email, now_ms())
        return user.id, self.app[TOKENS].issue(user.id, user.email)

    async def headers(self, email: str | None = None) -> tuple[str, dict]:
        user_id, token = await self.create(email)
        return user_id, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def users(client):
    return Users(client.app)

