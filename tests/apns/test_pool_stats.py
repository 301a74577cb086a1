"""What a pool reports for monitoring (/metrics): sockets, streams on the wire, pushes waiting."""

import asyncio

from owlmetry.h2client import PoolStats

from .conftest import send_many, token


async def test_stats_count_streams_on_the_wire_and_pushes_waiting_for_one(
        make_client, mock, behaviour):
    behaviour.max_streams = 3
    behaviour.latency_s = 60.0  # answers never come: the streams stay open until the close
    client = make_client(connections=1)
    assert client.pool_stats() == {"production": PoolStats(0, 0, 0),
                                   "sandbox": PoolStats(0, 0, 0)}

    sends = asyncio.ensure_future(send_many(client, [token(i) for i in range(5)]))
    await mock.requests_seen(3)

    assert client.pool_stats() == {"production": PoolStats(1, 3, 2),
                                   "sandbox": PoolStats(0, 0, 0)}
    await client.close()
    await sends
    assert client.pool_stats()["production"] == PoolStats(0, 0, 0)
