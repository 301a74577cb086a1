"""`live`: a sender that no longer wants its requests sent (a dispatcher whose lease on the work
ran out) stops them before the wire -- queued ones and retries alike -- while the ones already
on the wire are answered as usual."""

import asyncio

from owlmetry.apns.mock import TokenFault
from owlmetry.h2client import Failure, HostPool, PoolSettings, ssl_context
from tests.h2client.conftest import RefreshingBearer, SimpleJudge, request, token


def pool_on(mock, tls_files, auth_key, judge=None) -> HostPool:
    return HostPool("127.0.0.1", mock.port, ssl_context(tls_files[0]),
                    RefreshingBearer(auth_key), judge or SimpleJudge(),
                    PoolSettings(max_connections=1, timeout_s=10.0), label="test")


def send_soon_all(pool: HostPool, requests, live) -> list[asyncio.Future]:
    loop = asyncio.get_running_loop()
    results = [loop.create_future() for _ in requests]
    for req, result in zip(requests, results):
        pool.send_soon(req, result.set_result, live)
    return results


async def test_queued_requests_of_a_sender_no_longer_live_never_go_out(mock, behaviour,
                                                                      tls_files, auth_key):
    behaviour.max_streams = 2
    behaviour.latency_s = 0.3
    pool = pool_on(mock, tls_files, auth_key)
    wanted = True
    try:
        results = send_soon_all(pool, [request(i) for i in range(10)], lambda: wanted)
        await asyncio.wait_for(mock.requests_seen(2), 10)
        wanted = False
        outcomes = await asyncio.wait_for(asyncio.gather(*results), 10)
    finally:
        await pool.close()
    assert [o.status for o in outcomes[:2]] == [200, 200]  # on the wire already: answered
    assert all(o.failure is Failure.UNSENT for o in outcomes[2:])
    assert sum(mock.stats.requests.values()) == 2


async def test_a_retry_of_a_sender_no_longer_live_does_not_go_out(mock, behaviour, tls_files,
                                                                  auth_key):
    behaviour.token_faults[token(1)] = TokenFault(503, "ServiceUnavailable")
    pool = pool_on(mock, tls_files, auth_key, SimpleJudge(delay_s=0.3))
    wanted = True
    try:
        (result,) = send_soon_all(pool, [request(1)], lambda: wanted)
        await asyncio.wait_for(mock.requests_seen(1), 10)
        wanted = False
        outcome = await asyncio.wait_for(result, 10)
    finally:
        await pool.close()
    assert outcome.failure is Failure.UNSENT
    assert mock.stats.requests[token(1)] == 1


async def test_a_request_whose_sender_is_not_live_is_answered_unsent_at_once(
        mock, tls_files, auth_key):
    pool = pool_on(mock, tls_files, auth_key)
    try:
        (result,) = send_soon_all(pool, [request(1)], lambda: False)
        outcome = await asyncio.wait_for(result, 10)
    finally:
        await pool.close()
    assert outcome.failure is Failure.UNSENT
    assert mock.stats.requests[token(1)] == 0
