"""Health that tells the truth: /healthz takes a write, and an unavailable database is a 503.

Each way a database goes away, made for real: the SQLite file deleted or replaced under the
server, the SQLite database full (`PRAGMA max_page_count`, which fails a write exactly as a
full disk does: SQLITE_FULL), a PostgreSQL server stopped (a throwaway cluster of the test's
own) and started again. Every route that needs the database then answers 503 with
Retry-After, the log says so in one line without a traceback, and says when it is back.
"""

import asyncio
import contextlib
import logging
import os
import uuid

import pytest

from owlmetry.config import Config
from owlmetry.http import openapi
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.http.health import HEALTH
from owlmetry.retention import RetentionJob
from owlmetry.store import DatabaseUnavailable
from owlmetry.store.availability import QUIET_S, Availability
from tests.conftest import Users
from tests.http.test_auth import make_key
from tests.http.test_devices import body as device
from tests.http.test_openapi import Reference
from tests.http.test_producer import GOOD
from tests.postgres_cluster import find_bin_dir, start_cluster

UNAVAILABLE = {"error": "Database unavailable"}


def token() -> str:
    return uuid.uuid4().hex


async def until_status(client, path: str, status: int, deadline_s: float = 60.0):
    """GET `path` until it answers `status` (the health probe's finding lasts a second)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        response = await client.get(path)
        if response.status == status:
            return response
        assert loop.time() < end, f"{path} still answers {response.status}"
        await asyncio.sleep(0.1)


def outage_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "owlmetry.store" and record.levelno >= logging.ERROR]


def recovery_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if "available again" in record.getMessage()]


def assert_no_traceback(caplog) -> None:
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


async def assert_unavailable(response) -> None:
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.json() == UNAVAILABLE
    await Reference(openapi.document()).check_component(response, "DatabaseUnavailable")


@pytest.fixture
async def sqlite_app(tmp_path, aiohttp_client, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "owlmetry.db"
    client = await aiohttp_client(create_app(Config(database_url=f"sqlite:///{path}")))
    return client, path


async def test_a_deleted_sqlite_file_is_503_everywhere_said_once(sqlite_app, caplog):
    client, path = sqlite_app
    users = Users(client.app)
    _, headers = await users.headers()
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    assert (await client.get("/healthz")).status == 200

    os.remove(path)

    await assert_unavailable(await until_status(client, "/healthz", 503))
    for _ in range(3):
        await assert_unavailable(
            await client.post("/v1/devices", headers=headers, json=device(token())))
        await assert_unavailable(await client.post(
            "/v1/notifications", headers={"Authorization": f"Bearer {secret}"},
            json={**GOOD, "user_ids": [user_id]}))
    await asyncio.sleep(2.5)  # the dispatcher's claims meet it too, and say nothing more
    await assert_unavailable(await until_status(client, "/healthz", 503))
    [line] = outage_lines(caplog)
    assert "file deleted or replaced" in line and "restart" in line
    assert_no_traceback(caplog)
    assert not os.path.exists(path)  # nothing made a new, empty database there


async def test_a_sqlite_file_replaced_under_the_server_is_503(sqlite_app, caplog):
    client, path = sqlite_app
    _, headers = await Users(client.app).headers()
    assert (await client.post("/v1/devices", headers=headers, json=device(token()))).status == 201

    os.rename(path, f"{path}.old")
    with open(f"{path}.old", "rb") as old, open(path, "wb") as new:
        new.write(old.read())  # the same bytes, another file: the server cannot see its writes

    await assert_unavailable(await until_status(client, "/healthz", 503))
    await assert_unavailable(
        await client.post("/v1/devices", headers=headers, json=device(token())))
    assert len(outage_lines(caplog)) == 1


async def test_a_full_sqlite_database_is_503_and_200_again_once_there_is_room(sqlite_app, caplog):
    client, _ = sqlite_app
    store = client.app[STORE]
    _, headers = await Users(client.app).headers()
    ((pages,),) = await store.execute("PRAGMA page_count")
    # The writer's connection may not grow the file past its size now: SQLITE_FULL, as a full
    # disk gives it.
    await store.execute(f"PRAGMA max_page_count = {pages}")

    statuses = set()
    for _ in range(200):  # until the free pages are used up
        response = await client.post("/v1/devices", headers=headers, json=device(token()))
        statuses.add(response.status)
        if response.status == 503:
            await assert_unavailable(response)
            break
    assert statuses == {201, 503}
    await assert_unavailable(await until_status(client, "/healthz", 503))
    [line] = outage_lines(caplog)
    assert "disk full" in line
    assert_no_traceback(caplog)

    await store.execute(f"PRAGMA max_page_count = {pages * 100}")  # the disk has room again

    await until_status(client, "/healthz", 200)
    assert (await client.post("/v1/devices", headers=headers, json=device(token()))).status == 201
    assert len(recovery_lines(caplog)) == 1
    assert len(outage_lines(caplog)) == 1


@pytest.fixture
def own_cluster():
    """A PostgreSQL server of this test's own, to stop and start (never the suite's)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    cluster = start_cluster(bin_dir)
    yield cluster
    with contextlib.suppress(Exception):  # it may be stopped already
        cluster.resume()
    cluster.stop()


async def test_postgresql_stopped_is_503_said_once_and_200_after_a_restart(
        own_cluster, aiohttp_client, caplog):
    caplog.set_level(logging.INFO)
    client = await aiohttp_client(create_app(Config(database_url=own_cluster.url,
                                                    jwt_secret="s" * 32)))
    _, headers = await Users(client.app).headers()
    assert (await client.get("/healthz")).status == 200

    await asyncio.to_thread(own_cluster.pause)

    await assert_unavailable(await until_status(client, "/healthz", 503))
    for _ in range(10):
        await assert_unavailable(
            await client.post("/v1/devices", headers=headers, json=device(token())))
        await assert_unavailable(await client.get("/v1/devices", headers=headers))
    await asyncio.sleep(2.5)  # the dispatcher's claims meet it too, and say nothing more
    [line] = outage_lines(caplog)
    assert "unreachable" in line
    assert_no_traceback(caplog)

    await asyncio.to_thread(own_cluster.resume)

    await until_status(client, "/healthz", 200)
    assert (await client.post("/v1/devices", headers=headers, json=device(token()))).status == 201
    assert len(recovery_lines(caplog)) == 1
    assert len(outage_lines(caplog)) == 1
    assert_no_traceback(caplog)


async def test_healthz_probes_with_a_write_at_most_once_a_second(client, caplog):
    # Polled in a burst, one write probe answers them all (both backends).
    writes = []
    store = client.app[STORE]
    probe = store.probe_write

    async def counted():
        writes.append(1)
        await probe()

    store.probe_write = counted
    client.app[HEALTH].every_s = 3600  # no second probe however long the burst takes
    answers = await asyncio.gather(*(client.get("/healthz") for _ in range(50)))
    assert {answer.status for answer in answers} == {200}
    assert len(writes) == 1


def test_an_outage_is_said_once_per_kind_and_its_end_once():
    now = [0.0]
    availability = Availability(clock=lambda: now[0])
    full = DatabaseUnavailable("disk full", "database or disk is full")
    with contextlib.ExitStack() as stack:
        said = stack.enter_context(_captured("owlmetry.store"))
        for _ in range(100):
            availability.failed(full)
        availability.failed(DatabaseUnavailable("I/O error", "disk I/O error"))
        availability.succeeded()
        availability.succeeded()
        # The same kind again soon (a disk that is almost full): not said again, nor its end.
        availability.failed(full)
        availability.succeeded()
        now[0] += QUIET_S
        availability.failed(full)
        availability.succeeded()
    assert said == [
        (logging.ERROR, "the database is unavailable (disk full): database or disk is full; "
                        "answering 503 until it is back"),
        (logging.ERROR, "the database is unavailable (I/O error): disk I/O error; "
                        "answering 503 until it is back"),
        (logging.WARNING, "the database is available again (after: I/O error)"),
        (logging.ERROR, "the database is unavailable (disk full): database or disk is full; "
                        "answering 503 until it is back"),
        (logging.WARNING, "the database is available again (after: disk full)"),
    ]


@contextlib.contextmanager
def _captured(name: str):
    lines: list[tuple[int, str]] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append((record.levelno, record.getMessage()))

    logger, handler = logging.getLogger(name), Collect()
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


async def test_the_clean_up_skips_a_run_in_one_line_while_the_database_is_away(
        sqlite_app, caplog):
    client, path = sqlite_app
    os.remove(path)
    job = RetentionJob(client.app[STORE], Config(), every_s=0.05)
    job.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while not [r for r in caplog.records if r.getMessage().startswith("retention: skipped")]:
            assert loop.time() < end, "the clean-up never said it skipped"
            await asyncio.sleep(0.05)
    finally:
        await job.stop()
    [skipped, *_] = [r for r in caplog.records if r.name == "owlmetry.retention"]
    assert "file deleted or replaced" in skipped.getMessage()
    assert len(outage_lines(caplog)) == 1
    assert_no_traceback(caplog)
