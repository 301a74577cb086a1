"""PostgreSQL's requests first: a bulk statement (an enqueue chunk, a claim, the answers' write, a
clean-up batch) about to start while a request's statement is under way in the same process
starts after it, or after the gate's longest wait, whichever comes first. Against a real
PostgreSQL server: each statement says when it ran (`clock_timestamp()`)."""

import asyncio

import pytest

# A request's statement that runs `seconds`, then says when it ended.
SLOW_REQUEST = ("WITH slept AS MATERIALIZED (SELECT pg_sleep($1)) "
                "SELECT clock_timestamp() FROM slept")
NOW = "SELECT clock_timestamp()"


def bulk_statement(engine, kind: str):
    """A bulk statement of `kind` that says when it ran."""
    async def in_transaction():
        async with engine.transaction(bulk=True) as run:
            return await run(NOW)
    return {
        "write_bulk": lambda: engine.write_bulk(NOW),
        "read_bulk": lambda: engine.read_bulk(NOW),
        "write_lease": lambda: engine.write_lease(NOW),
        "transaction": in_transaction,
    }[kind]()


def request_statement(engine, kind: str, seconds: float):
    async def in_transaction():
        async with engine.transaction() as run:
            return await run(SLOW_REQUEST, seconds)
    return {
        "read": lambda: engine.read(SLOW_REQUEST, seconds),
        "write": lambda: engine.write(SLOW_REQUEST, seconds),
        "transaction": in_transaction,
    }[kind]()


async def under_way(engine) -> None:
    while not engine.requests_first.under_way:
        await asyncio.sleep(0)


@pytest.fixture
def engine(store):
    if store.engine.name != "postgresql":
        pytest.skip("SQLite: its one writer's turns (test_registration_turns.py)")
    return store.engine


@pytest.mark.parametrize("bulk", ["write_bulk", "read_bulk", "write_lease", "transaction"])
@pytest.mark.parametrize("request_kind", ["read", "write", "transaction"])
async def test_a_bulk_statement_starts_after_the_request_under_way(engine, bulk, request_kind):
    engine.requests_first.max_wait_s = 30  # longer than the request: only its end lets bulk go
    request = asyncio.create_task(request_statement(engine, request_kind, 0.3))
    await under_way(engine)
    (bulk_ran,), = await bulk_statement(engine, bulk)
    (request_ended,), = await request
    assert bulk_ran >= request_ended
    assert engine.requests_first.under_way == 0


async def test_a_bulk_statement_waits_no_longer_than_the_gate_allows(engine):
    engine.requests_first.max_wait_s = 0.05
    request = asyncio.create_task(engine.read(SLOW_REQUEST, 3))
    await under_way(engine)
    (bulk_ran,), = await engine.write_bulk(NOW)
    (request_ended,), = await request
    assert bulk_ran < request_ended  # it went while the request still ran: delayed, not starved


async def test_requests_are_not_held_back_by_bulk_work_under_way(engine):
    engine.requests_first.max_wait_s = 30
    bulk = asyncio.create_task(engine.write_bulk(SLOW_REQUEST, 0.3))
    await asyncio.sleep(0.05)  # the bulk statement is running in the database
    (request_ran,), = await engine.read(NOW)
    (bulk_ended,), = await bulk
    assert request_ran < bulk_ended


async def test_a_failed_request_statement_lets_bulk_work_go(engine):
    engine.requests_first.max_wait_s = 30
    with pytest.raises(Exception, match="division by zero"):
        await engine.read("SELECT 1 / 0")
    with pytest.raises(Exception, match="division by zero"):
        async with engine.transaction() as run:
            await run("SELECT 1 / 0")
    assert engine.requests_first.under_way == 0
    await asyncio.wait_for(engine.write_bulk(NOW), 5)  # not held for the gate's 30 s
