"""The HTTP/2 core through its generic seam, against the real mock APNs over TLS and the faults
it injects: every request ends with its judge's result, nothing is lost, and nothing goes out
twice that the peer processed, except what a dropped connection forces."""

import asyncio
import json
import logging
from collections import Counter

from owlmetry.apns.mock import TokenFault
from owlmetry.h2client import RENEW, Failure, PoolStats

from .conftest import SimpleJudge, request, token


def each_delivered_once(mock, n: int) -> bool:
    return dict(mock.stats.delivered) == {token(i): 1 for i in range(n)}


async def test_an_answer_gives_the_judge_status_headers_and_body(make_pool, mock, behaviour):
    behaviour.unregistered[token(2)] = 1_700_000_000_123
    pool = make_pool()
    ok, gone = await pool.send_many([request(1), request(2)])
    assert (ok.status, ok.body, ok.attempts) == (200, b"", 1)
    assert len(ok.header) == 36  # the mock's apns-id, a uuid
    assert gone.status == 410 and json.loads(gone.body) == {
        "reason": "Unregistered", "timestamp": 1_700_000_000_123}
    assert mock.stats.payloads[token(1)] == {"aps": {"alert": "hi"}}


async def test_goaway_mid_load_every_request_once_refused_streams_sent_again(
        make_pool, mock, behaviour):
    behaviour.goaway_after = 40
    pool = make_pool(max_connections=2)
    results = await pool.send_many([request(i) for i in range(400)])
    assert all(r.ok and r.attempts == 1 for r in results)  # a refused stream is no attempt
    assert each_delivered_once(mock, 400)
    assert sum(mock.stats.requests.values()) == 400  # what was refused went out once more
    assert mock.stats.goaways_sent >= 9 and mock.stats.protocol_errors == 0


async def test_a_dropped_connection_sends_again_only_what_was_in_flight(make_pool, mock,
                                                                        behaviour):
    behaviour.drop_after = 30
    behaviour.max_drops = 3
    behaviour.latency_s = 0.005  # several answers pending when the socket dies
    pool = make_pool(max_connections=1)
    results = await pool.send_many([request(i) for i in range(200)])
    assert all(r.ok for r in results)
    assert mock.stats.drops == 3
    # Everything in flight on a dropped socket is LOST (some of it the mock never read).
    assert set(pool.judge.failures) == {Failure.LOST}
    assert len(pool.judge.failures) >= len(mock.stats.lost_answers) > 0
    # Processed twice only where the answer died with a socket: one extra per lost answer.
    assert set(mock.stats.delivered) == {token(i) for i in range(200)}
    lost = Counter(mock.stats.lost_answers)
    assert {t: n - 1 for t, n in mock.stats.delivered.items() if n > 1} == +lost


async def test_429_and_503_go_out_again_as_the_judge_says(make_pool, mock, behaviour):
    for i in range(10):
        behaviour.token_faults[token(i)] = TokenFault(429, "TooManyRequests", times=2)
    behaviour.error_probability = {503: 0.2}
    pool = make_pool(judge=SimpleJudge(max_retries=12))
    results = await pool.send_many([request(i) for i in range(150)])
    assert all(r.ok for r in results)
    assert each_delivered_once(mock, 150)
    assert all(results[i].retries >= 2 and results[i].attempts == results[i].retries + 1
               for i in range(10))
    assert mock.stats.responses_by_status[503] > 0


async def test_a_retry_goes_out_on_another_connection_than_its_last(make_pool, mock, behaviour):
    # Two connections open, then a request answered 503 three times: each attempt goes to the
    # connection the last one did not use (a 5xx may be that connection's server's).
    received = mock.record()
    behaviour.latency_s = 0.005  # one connection is still busy when the second opens
    pool = make_pool(max_connections=2, max_streams_per_connection=1,
                     judge=SimpleJudge(delay_s=0.0))
    assert all(r.ok for r in await pool.send_many([request(i) for i in range(20)]))
    assert mock.stats.connections_opened == 2
    behaviour.latency_s = 0.0
    behaviour.token_faults[token(99)] = TokenFault(503, "ServiceUnavailable", times=3)
    result = await pool.send(request(99))
    assert result.ok and result.attempts == 4
    tries = [r.connection for r in received if r.token == token(99)]
    assert len(tries) == 4 and all(a != b for a, b in zip(tries, tries[1:]))


async def test_a_judge_that_gives_up_gets_its_own_result(make_pool, mock, behaviour):
    behaviour.token_faults[token(1)] = TokenFault(503, "ServiceUnavailable")
    pool = make_pool(judge=SimpleJudge(max_retries=2))
    result = await pool.send(request(1))
    assert (result.status, result.attempts, result.retries) == (503, 3, 2)
    assert mock.stats.requests[token(1)] == 3


async def test_a_retry_past_the_deadline_ends_with_the_judges_result(make_pool, mock, behaviour):
    behaviour.token_faults[token(1)] = TokenFault(503, "ServiceUnavailable")
    pool = make_pool(judge=SimpleJudge(delay_s=60.0), timeout_s=5.0)
    result = await pool.send(request(1))
    assert (result.status, result.attempts) == (503, 1)  # no waiting a minute for nothing
    assert mock.stats.requests[token(1)] == 1


async def test_reset_streams_reach_the_judge_and_go_out_again(make_pool, mock, behaviour):
    behaviour.reset_tokens[token(1)] = 2
    pool = make_pool()
    result = await pool.send(request(1))
    assert result.ok and result.attempts == 3
    assert pool.judge.failures == [Failure.RESET, Failure.RESET]


async def test_slow_answers_time_out_on_the_wire_and_leave_nothing_behind(make_pool, mock,
                                                                          behaviour):
    behaviour.latency_s = 30
    pool = make_pool(timeout_s=0.2)
    result = await pool.send(request(1))
    assert (result.failure, result.attempts) == (Failure.TIMEOUT, 1)
    await pool.pool.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert pool.pool.connections == 0


async def test_a_low_stream_limit_is_kept_and_waiting_requests_go_in_order(make_pool, mock,
                                                                          behaviour):
    behaviour.max_streams = 2
    behaviour.latency_s = 0.005
    pool = make_pool(max_connections=1)
    assert (await pool.send(request(0))).ok
    results = await pool.send_many([request(i) for i in range(1, 41)])
    assert all(r.ok for r in results)
    assert mock.stats.max_streams_open == 2
    assert list(mock.stats.requests) == [token(i) for i in range(41)]


async def test_the_stream_limit_follows_the_peers_settings(make_pool, mock, behaviour):
    behaviour.initial_max_streams = 1
    behaviour.max_streams = 20
    behaviour.latency_s = 0.02
    pool = make_pool(max_connections=1)
    assert (await pool.send(request(0))).ok
    assert all(r.ok for r in await pool.send_many([request(i) for i in range(1, 81)]))
    assert 1 < mock.stats.max_streams_open <= 20
    mock.set_max_streams(3)
    await asyncio.sleep(0.05)  # the new SETTINGS frame arrives
    mock.reset_stats()
    assert all(r.ok for r in await pool.send_many([request(i) for i in range(81, 121)]))
    assert mock.stats.max_streams_open == 3 and mock.stats.connections_opened == 0


async def test_a_silent_connection_is_found_out_by_ping(make_pool, mock):
    pool = make_pool(idle_ping_s=0.0, ping_timeout_s=0.1)
    assert (await pool.send(request(1))).ok
    mock.silence_connections()
    result = await pool.send(request(2))  # the PING goes unanswered: a new connection takes it
    assert result.ok and result.attempts == 1
    assert mock.stats.connections_opened == 2


async def test_an_unreachable_host_gives_connect_failed_with_backoff_between_tries(
        make_pool, mock, caplog):
    caplog.set_level(logging.WARNING, logger="owlmetry.h2client.pool")
    port = mock.port
    await mock.stop()
    pool = make_pool(port=port, timeout_s=0.5, connect_timeout_s=0.1)
    result = await pool.send(request(1))
    assert (result.failure, result.attempts) == (Failure.CONNECT_FAILED, 0)
    assert "ConnectionRefusedError" in pool.pool.connect_error
    # Refused at once, every time: without the backoff (25 ms, then 50, 100, 200, ... at
    # least) there would be hundreds of tries in half a second, not a handful.
    tries = [r for r in caplog.records if "connect failed" in r.getMessage()]
    assert 1 <= len(tries) <= 6


async def test_a_refused_credential_is_renewed_once_for_everyone_waiting(make_pool, mock):
    pool = make_pool()
    assert (await pool.send(request(0))).ok
    mock.expire_provider_tokens()
    results = await pool.send_many([request(i) for i in range(1, 101)])
    assert all(r.ok and r.generation == 2 for r in results)
    assert pool.authorization.renewals == 1
    assert mock.stats.responses_by_status[403] == 100
    assert len(mock.stats.provider_tokens) == 2


async def test_a_renewal_that_never_ends_stops_at_the_deadline(make_pool, mock):
    pool = make_pool(timeout_s=0.3)
    assert (await pool.send(request(0))).ok
    pool.authorization.hang = True
    mock.expire_provider_tokens()
    results = await pool.send_many([request(1), request(2)])
    assert [(r.failure, r.attempts) for r in results] == [(Failure.UNSENT, 1)] * 2
    assert pool.authorization.renewals == 1


async def test_connections_open_on_demand_up_to_the_limit_and_close_ends_everything(
        make_pool, mock, behaviour):
    behaviour.max_streams = 5
    behaviour.latency_s = 60.0  # answers never come: streams stay open until the close
    pool = make_pool(max_connections=3)
    sends = asyncio.ensure_future(pool.send_many([request(i) for i in range(60)]))
    await mock.requests_seen(15)
    assert pool.pool.stats() == PoolStats(3, 15, 45)
    assert mock.stats.connections_opened == 3
    await pool.pool.close()
    results = await sends
    assert {(r.failure, r.attempts) for r in results} == {(Failure.CLOSED, 0)}
    assert (await pool.send(request(99))).failure is Failure.CLOSED
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert pool.pool.connections == 0 and pool.pool.stats() == PoolStats(0, 0, 0)


async def test_close_ends_requests_waiting_for_a_renewal(make_pool, mock):
    pool = make_pool()
    assert (await pool.send(request(0))).ok
    pool.authorization.hang = True
    mock.expire_provider_tokens()
    sends = asyncio.ensure_future(pool.send_many([request(1), request(2)]))
    while pool.judge.answers.count(403) < 2:  # both refused, both waiting for the renewal
        await asyncio.sleep(0.005)
    await pool.pool.close()
    assert [(r.failure, r.attempts) for r in await sends] == [(Failure.CLOSED, 1)] * 2
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_close_that_comes_before_a_retry_starts_ends_it(make_pool, mock):
    closing = []

    class ClosingJudge(SimpleJudge):
        def answered(self, x):
            decision = super().answered(x)
            if decision is RENEW:  # close() starts before the send_soon path's retry task does
                closing.append(asyncio.ensure_future(pool.pool.close()))
            return decision

    pool = make_pool(judge=ClosingJudge(), timeout_s=5.0)
    assert (await pool.send(request(0))).ok
    mock.expire_provider_tokens()
    result = await asyncio.wait_for(pool.send(request(1)), 1.0)
    assert (result.failure, result.attempts) == (Failure.CLOSED, 1)
    await closing[0]
