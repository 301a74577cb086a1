"""The PostgreSQL engine names a database collation that makes its indexes dearer: advice a
server logs once it has started (never on a start it refuses)."""

import logging

import asyncpg
import pytest

from owlmetry.config import Config
from owlmetry.http.app import create_app
from owlmetry.store import open_store
from tests.conftest import admin_command, database_numbers


@pytest.fixture
async def database_with_collation(postgres_cluster):
    made = []

    async def make(collation: str) -> str:
        name = f"test_{next(database_numbers)}"
        try:
            await admin_command(postgres_cluster, f"CREATE DATABASE {name} "
                                f"LC_COLLATE '{collation}' TEMPLATE template0")
        except asyncpg.InvalidParameterValueError:
            pytest.skip(f"no {collation} locale on this machine")
        made.append(name)
        return postgres_cluster.database_url(name)

    yield make
    for name in made:
        await admin_command(postgres_cluster, f"DROP DATABASE {name} WITH (FORCE)")


async def advice_of(url: str) -> tuple[str, ...]:
    store = await open_store(url)
    try:
        return store.advice()
    finally:
        await store.close()


async def test_a_c_database_has_no_advice(database_with_collation):
    assert await advice_of(await database_with_collation("C")) == ()


async def test_a_libc_locale_is_named_with_the_readme_section(database_with_collation):
    (advice,) = await advice_of(await database_with_collation("C.UTF-8"))

    assert "C.UTF-8" in advice and "The database's collation" in advice


async def test_sqlite_has_no_advice(tmp_path):
    assert await advice_of(f"sqlite:///{tmp_path}/owlmetry.db") == ()


async def test_a_started_server_logs_it_once(database_with_collation, aiohttp_client, tmp_path,
                                             caplog):
    url = await database_with_collation("C.UTF-8")
    with caplog.at_level(logging.INFO, logger="owlmetry"):
        client = await aiohttp_client(create_app(Config(
            database_url=url, secret_key_file=str(tmp_path / "secret.key"))))
        assert (await client.get("/healthz")).status == 200

    assert [r.getMessage() for r in caplog.records if "collation" in r.getMessage()] \
        == list(await advice_of(url))
