"""Faults injected by the mock: every push ends with a result, nothing is lost or sent twice
except what a lost connection forces, and nothing is left running."""

import asyncio
from collections import Counter

from h2.exceptions import ProtocolError

from owlmetry.apns import ResultKind, RetryPolicy
from owlmetry.apns.mock import TokenFault
from owlmetry.h2client.h2_seam import ClientH2

from .conftest import PAYLOAD, send_many, token


def assert_each_delivered_once(mock, tokens):
    assert dict(mock.stats.delivered) == {t: 1 for t in tokens}


async def test_goaway_mid_load_delivers_each_push_exactly_once(make_client, mock, behaviour):
    behaviour.goaway_after = 60
    tokens = [token(i) for i in range(500)]
    results = await send_many(make_client(connections=2), tokens)
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    assert mock.stats.goaways_sent >= 5 and mock.stats.protocol_errors == 0


async def test_dropped_connection_retries_only_what_was_in_flight(make_client, mock, behaviour):
    behaviour.drop_after = 40
    behaviour.max_drops = 3
    behaviour.latency_s = 0.005  # so that several answers are pending when the socket dies
    tokens = [token(i) for i in range(300)]
    results = await send_many(make_client(connections=1), tokens)
    assert [r for r in results if not r.ok] == []
    assert mock.stats.drops == 3
    assert set(mock.stats.delivered) == set(tokens)
    # A push is accepted twice only if APNs' answer died with a socket: one acceptance per
    # lost answer, plus the one whose answer arrived.
    lost = Counter(mock.stats.lost_answers)
    assert {t: n - 1 for t, n in mock.stats.delivered.items() if n > 1} == +lost


async def test_429_and_503_storms_end_delivered(make_client, mock, behaviour):
    for i in range(20):
        behaviour.token_faults[token(i)] = TokenFault(429, "TooManyRequests", times=2)
    behaviour.error_probability = {503: 0.2}
    tokens = [token(i) for i in range(200)]
    client = make_client(retry=RetryPolicy(max_retries=12, base_delay_s=0.001, max_delay_s=0.005,
                                           too_many_requests_delay_s=0.002))
    results = await send_many(client, tokens)
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    assert all(mock.stats.requests[token(i)] >= 3 for i in range(20))
    assert mock.stats.responses_by_status[503] > 0


async def test_retries_are_bounded(make_client, mock, behaviour):
    behaviour.token_faults[token(1)] = TokenFault(500, "InternalServerError")
    behaviour.token_faults[token(2)] = TokenFault(429, "TooManyRequests")
    client = make_client(retry=RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.002,
                                           too_many_requests_delay_s=0.001))
    busy, throttled = await send_many(client, [token(1), token(2)])
    assert busy.kind is ResultKind.ERROR and (busy.status, busy.reason) == (500, "InternalServerError")
    assert busy.retry_later and busy.attempts == 4
    assert throttled.status == 429 and throttled.retry_later and throttled.attempts == 4
    assert mock.stats.requests == {token(1): 4, token(2): 4}


async def test_a_push_that_draws_six_failures_in_a_row_is_delivered_by_the_pool(
        make_client, mock, behaviour):
    # Apple's rules as shipped: 5xx and reset streams go out again at once, 7 tries in all,
    # before the push goes back to the dispatcher's queue and its seconds of backoff (a
    # 20,000-device fan-out with 10% of requests failing drew such a push).
    behaviour.reset_tokens[token(1)] = 1
    behaviour.token_faults[token(1)] = TokenFault(503, "ServiceUnavailable", times=5)
    result = await make_client(retry=RetryPolicy()).send(token(1), PAYLOAD)
    assert result.ok and result.attempts == 7
    assert mock.stats.requests[token(1)] == 7


async def test_a_429_waits_its_delay_where_a_5xx_goes_out_again_at_once(make_client, mock,
                                                                         behaviour):
    # A 429 is about its device token: it waits (here longer than a push may take, so the 429
    # comes back as it is); a 5xx or a reset stream says nothing about the token.
    behaviour.token_faults[token(1)] = TokenFault(429, "TooManyRequests", times=1)
    behaviour.token_faults[token(2)] = TokenFault(503, "ServiceUnavailable", times=1)
    behaviour.reset_tokens[token(3)] = 1
    client = make_client(timeout_s=5.0, retry=RetryPolicy(too_many_requests_delay_s=60.0))
    throttled, busy, reset = await send_many(client, [token(1), token(2), token(3)])
    assert throttled.status == 429 and throttled.retry_later and throttled.attempts == 1
    assert busy.ok and busy.attempts == 2 and reset.ok and reset.attempts == 2
    assert mock.stats.requests == {token(1): 1, token(2): 2, token(3): 2}


async def test_retries_stop_when_apns_fails_widely(make_client, mock, behaviour):
    # Every request answered 503: with a budget of 20, retries stop once 10 failures have
    # drained it, and each push comes back to its caller, to try much later, after one try.
    behaviour.error_probability = {503: 1.0}
    client = make_client(retry=RetryPolicy(max_retries=5, base_delay_s=0.001, max_delay_s=0.002,
                                           too_many_requests_delay_s=0.001, budget=20))
    tokens = [token(i) for i in range(100)]
    results = await send_many(client, tokens)
    assert all(r.retry_later and r.status == 503 for r in results)
    assert sum(mock.stats.requests.values()) <= len(tokens) + 10  # not 600
    assert sum(r.attempts for r in results) == sum(mock.stats.requests.values())


async def test_the_retry_budget_refills_while_apns_answers(make_client, mock, behaviour):
    # 5% of requests fail: the answers in between earn back more than the failures spend.
    behaviour.error_probability = {429: 0.025, 503: 0.025}
    client = make_client(retry=RetryPolicy(max_retries=5, base_delay_s=0.001, max_delay_s=0.002,
                                           too_many_requests_delay_s=0.001, budget=20))
    tokens = [token(i) for i in range(600)]
    results = await send_many(client, tokens)
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    assert mock.stats.responses_by_status[429] + mock.stats.responses_by_status[503] > 10


async def test_a_push_sent_again_goes_ahead_of_the_queue(make_client, mock, behaviour):
    # One stream at a time and 40 pushes waiting: the first is answered 503 once and sent
    # again at once, before the pushes that have not had their turn yet.
    behaviour.max_streams = 1
    behaviour.token_faults[token(0)] = TokenFault(503, "ServiceUnavailable", times=1)
    received = mock.record()
    client = make_client(connections=1, retry=RetryPolicy(
        max_retries=3, base_delay_s=0.0, max_delay_s=0.0, too_many_requests_delay_s=0.0))
    tokens = [token(i) for i in range(40)]
    results = await send_many(client, tokens)
    assert all(r.ok for r in results)
    order = [r.token for r in received]
    assert order.count(token(0)) == 2 and order.index(token(0), 1) < 10


async def test_a_push_sent_again_goes_ahead_of_those_waiting_for_window(make_client, mock,
                                                                         behaviour):
    # Bodies of 3,000 bytes: APNs' 64 KB connection window holds ~20 of them, the other
    # pushes wait for it on the connection. The push answered 503 goes out again ahead of
    # them, not after the 200 sent with it.
    behaviour.token_faults[token(0)] = TokenFault(503, "ServiceUnavailable", times=1)
    received = mock.record()
    client = make_client(connections=1, retry=RetryPolicy(
        max_retries=3, base_delay_s=0.0, max_delay_s=0.0, too_many_requests_delay_s=0.0))
    payload = {"aps": {"alert": "x" * 3000}}
    tokens = [token(i) for i in range(200)]
    results = await asyncio.gather(*(client.send(t, payload) for t in tokens))
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    order = [r.token for r in received]
    assert order.count(token(0)) == 2 and order.index(token(0), 1) < 100


async def test_rst_stream_is_retried(make_client, mock, behaviour):
    behaviour.reset_tokens[token(1)] = 2
    result = await make_client().send(token(1), PAYLOAD)
    assert result.ok and result.attempts == 3
    assert mock.stats.resets_sent == 2


async def test_expired_provider_token_is_renewed_exactly_once(make_client, mock):
    client = make_client()
    assert (await client.send(token(0), PAYLOAD)).ok
    mock.expire_provider_tokens()
    tokens = [token(i) for i in range(1, 51)]
    results = await send_many(client, tokens)
    assert all(r.ok for r in results)
    assert client.token.generation == 2
    assert len(mock.stats.provider_tokens) == 2
    assert mock.stats.responses_by_status[403] == 50


async def test_timeout_gives_an_error_result_and_leaks_nothing(make_client, mock, behaviour):
    behaviour.latency_s = 30
    client = make_client(timeout_s=0.2)
    result = await client.send(token(1), PAYLOAD)
    assert result.kind is ResultKind.ERROR and result.reason == "Timeout" and result.retry_later
    await client.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert client.connections() == 0


async def test_silent_connection_is_caught_by_ping(make_client, mock):
    client = make_client(idle_ping_s=0.0, ping_timeout_s=0.1)
    assert (await client.send(token(1), PAYLOAD)).ok
    mock.silence_connections()
    result = await client.send(token(2), PAYLOAD)  # PING unanswered: a new connection takes it
    assert result.ok and result.attempts == 1
    assert mock.stats.connections_opened == 2 and mock.stats.pings == 0
    assert (await client.send(token(3), PAYLOAD)).ok
    assert mock.stats.pings == 1 and mock.stats.connections_opened == 2


async def test_unreachable_host_gives_connection_failed(make_client, mock):
    port = mock.port
    await mock.stop()
    client = make_client(timeout_s=0.3, connect_timeout_s=0.1)
    result = await client.send(token(1), PAYLOAD)
    assert (result.kind, result.reason, result.attempts) == (ResultKind.ERROR, "ConnectionFailed", 0)
    assert port  # the mock's port is closed for good: nothing else listens there in this test


async def test_close_ends_in_flight_pushes_and_leaves_no_tasks_or_sockets(make_client, mock, behaviour):
    behaviour.latency_s = 30
    client = make_client(connections=2)
    pending = [asyncio.ensure_future(client.send(token(i), PAYLOAD)) for i in range(20)]
    await mock.requests_seen(20)
    await client.close()
    results = await asyncio.gather(*pending)
    assert {r.reason for r in results} == {"ClientClosed"}
    assert (await client.send(token(99), PAYLOAD)).reason == "ClientClosed"
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert client.connections() == 0


async def test_h2_refusing_a_stream_costs_the_connection_not_the_push(make_client, mock,
                                                                     monkeypatch):
    client = make_client()
    assert (await client.send(token(1), PAYLOAD)).ok
    refuse_once = [ProtocolError("state mismatch")]

    def send_request(self, *args):
        if refuse_once:
            raise refuse_once.pop()
        return original(self, *args)

    original = ClientH2.send_request
    monkeypatch.setattr(ClientH2, "send_request", send_request)
    result = await client.send(token(2), PAYLOAD)
    assert result.ok and result.attempts == 1
    assert mock.stats.connections_opened == 2


async def test_stream_limit_dropped_to_one_and_raised_mid_load(make_client, mock, behaviour):
    # After 150 requests in all the mock allows 1 stream per connection, after 250 1000 again.
    behaviour.max_streams_schedule = [(150, 1), (250, 1000)]
    behaviour.latency_s = 0.002  # so that many streams are open when the limit drops
    tokens = [token(i) for i in range(600)]
    results = await send_many(make_client(connections=2), tokens)
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    # A stream over an acknowledged limit is a protocol error to the mock's h2: none came.
    assert mock.stats.max_streams_changes == 2 and mock.stats.protocol_errors == 0


async def test_connections_reset_with_rst_lose_only_what_was_in_flight(make_client, mock,
                                                                      behaviour):
    # The first 4 connections are reset at their 300th request, the later ones told GOAWAY
    # after their 400th stream: with up to 50 streams in flight, a push is lost in a reset at
    # most 1 time in 6, and with 12 retries never every time.
    behaviour.drop_after = 300
    behaviour.drop_rst = True
    behaviour.max_drops = 4
    behaviour.goaway_after = 400
    behaviour.latency_s = 0.002
    behaviour.error_probability = {429: 0.05, 503: 0.05}
    tokens = [token(i) for i in range(3000)]
    client = make_client(connections=2, max_streams_per_connection=50, retry=RetryPolicy(
        max_retries=12, base_delay_s=0.001, max_delay_s=0.005, too_many_requests_delay_s=0.002))
    results = await send_many(client, tokens)
    assert [r for r in results if not r.ok] == []
    assert mock.stats.drops == 4 and mock.stats.goaways_sent >= 1
    assert mock.stats.protocol_errors == 0
    # A push is accepted twice only if it was on a connection later reset (its answer
    # written or not), and at least once more for each answer never written.
    twice = Counter({t: n - 1 for t, n in mock.stats.delivered.items() if n > 1})
    assert Counter(mock.stats.lost_answers) <= twice <= Counter(mock.stats.reset_judged)
    assert mock.stats.lost_answers


async def test_requests_waiting_for_window_respect_a_lowered_stream_limit(make_client, mock,
                                                                          behaviour):
    # 3.5 KB bodies: the connection's 64 KB send window holds 18 of them, so most requests
    # wait for window on their connection when the limit drops to 1 under them.
    behaviour.max_streams_schedule = [(30, 1), (90, 1000)]
    behaviour.latency_s = 0.003
    payload = {"aps": {"alert": {"title": "t", "body": "b" * 3500}}}
    tokens = [token(i) for i in range(300)]
    client = make_client(connections=1)
    results = await asyncio.gather(*(client.send(t, payload) for t in tokens))
    assert all(r.ok for r in results)
    assert_each_delivered_once(mock, tokens)
    assert mock.stats.max_streams_changes == 2
    assert mock.stats.protocol_error_reasons == {}
