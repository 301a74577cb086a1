"""The PostgreSQL engine names a database collation that makes its indexes dearer, once, at open."""

import logging

import asyncpg
import pytest

from owlmetry.store import open_store
from tests.conftest import admin_command, database_numbers

NOTE = "the database's collation is"


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


async def opened_notes(url: str, caplog) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="owlmetry.store"):
        store = await open_store(url)
        await store.close()
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(NOTE)]


async def test_a_c_database_opens_without_a_note(database_with_collation, caplog):
    assert await opened_notes(await database_with_collation("C"), caplog) == []


async def test_a_libc_locale_is_named_with_the_readme_section(database_with_collation, caplog):
    notes = await opened_notes(await database_with_collation("C.UTF-8"), caplog)

    assert len(notes) == 1
    assert "C.UTF-8" in notes[0] and "The database's collation" in notes[0]
