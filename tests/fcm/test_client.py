"""The FCM client on the HTTP/2 core against the in-process mock FCM (TLS, HTTP/2): every answer
of FCM's table as the caller sees it, the connection faults (GOAWAY every N streams, low stream
limits, dropped sockets), access-token refresh under load, and the mock's receipts showing
nothing lost and nothing sent twice."""

import asyncio
import functools

import orjson
import pytest

from owlmetry.apns.mock import TokenFault
from owlmetry.fcm import Decision, MessageTemplate
from owlmetry.fcm.client import FCMClient, FcmRetryPolicy
from owlmetry.store import NotificationContent

FAST = FcmRetryPolicy(max_retries=3, lost_base_delay_s=0.01, lost_max_delay_s=0.05)
CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote", "/feedback/1",
                              {"feedback_id": "f1", "n": 3})
TEMPLATE = MessageTemplate(CONTENT)


def fcm_token(i: int) -> str:
    return f"tok{i}:APA91b" + "Xy_-" * 36


def body(i: int) -> bytes:
    return TEMPLATE.render(fcm_token(i), "00000000-0000-0000-0000-000000000001", 2)


@pytest.fixture
async def client(mock, account, tls_files):
    made = []

    def make(**options) -> FCMClient:
        options.setdefault("retry", FAST)
        options.setdefault("timeout_s", 10)
        made.append(FCMClient(account, url=mock.url, ca_file=tls_files[0], **options))
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def fan_out(client: FCMClient, n: int, first: int = 0) -> dict[str, object]:
    """send_soon to n devices; their answers by token."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    answers = {}

    def on_result(token, answer):
        answers[token] = answer
        if len(answers) == n and not done.done():
            done.set_result(None)

    for i in range(first, first + n):
        client.send_soon(body(i), functools.partial(on_result, fcm_token(i)))
    await asyncio.wait_for(done, 60)
    return answers


def exactly_once(mock, tokens) -> None:
    for t in tokens:
        assert mock.stats.delivered[t] == 1, t
    assert mock.stats.summary()["duplicate_delivered"] == 0


async def test_a_message_is_delivered_as_built(mock, client):
    answer = await client().send(body(1))
    assert answer.decision is Decision.DELIVERED and answer.status == 200
    assert answer.message_name.startswith("projects/owl-test/messages/")
    sent = mock.stats.payloads[fcm_token(1)]
    assert sent["notification"] == {"title": "New feedback", "body": "Someone wrote"}
    assert sent["data"] == {"feedback_id": "f1", "n": "3", "link": "/feedback/1",
                            "type": "feedback.new",
                            "notification_id": "00000000-0000-0000-0000-000000000001"}
    assert sent["android"]["notification"]["notification_count"] == 2


@pytest.mark.parametrize(("prefix", "code"), [("dead", "UNREGISTERED"),
                                              ("other", "SENDER_ID_MISMATCH")])
async def test_dead_and_foreign_tokens_are_to_be_removed(mock, client, behaviour, prefix, code):
    behaviour.dead_prefixes, behaviour.mismatch_prefixes = ("dead",), ("other",)
    token = prefix + fcm_token(1)
    answer = await client().send(TEMPLATE.render(token, "n", 0))
    assert (answer.decision, answer.code) == (Decision.REMOVE, code)
    assert mock.stats.requests[token] == 1  # never retried


async def test_invalid_argument_removes_only_a_blamed_token(mock, client, behaviour):
    behaviour.invalid_prefixes = ("bad",)
    c = client()
    answer = await c.send(TEMPLATE.render("bad" + fcm_token(1), "n", 0))
    assert (answer.decision, answer.code) == (Decision.REMOVE, "INVALID_ARGUMENT")
    # A bad message (not the token) fails with FCM's message and keeps the device.
    broken = orjson.dumps({"message": {"token": fcm_token(2), "android": {"ttl": "forever"}}})
    answer = await c.send(broken)
    assert answer.decision is Decision.FAIL and answer.status == 400
    assert answer.reason and "ttl" in answer.reason.lower()


async def test_quota_waits_for_retry_after_then_delivers(mock, client, behaviour):
    behaviour.quota_next, behaviour.retry_after_s = 2, 0
    answer = await client().send(body(1))
    assert answer.decision is Decision.DELIVERED
    assert mock.stats.requests[fcm_token(1)] == 3 and mock.stats.outcomes["QUOTA_EXCEEDED"] == 2


async def test_quota_without_retry_after_waiting_past_the_deadline_is_retry_later(
        mock, client, behaviour):
    # No Retry-After: the wait is until the next minute, past a 2 s deadline -- unless the
    # minute turns within those 2 s, once: then the retry meets the quota again and the wait
    # for the minute after is past the deadline.
    behaviour.quota_next = 10
    answer = await client(timeout_s=2).send(body(1))
    assert (answer.decision, answer.code) == (Decision.RETRY_AFTER, "QUOTA_EXCEEDED")
    assert 0 < answer.retry_after_s <= 60
    assert mock.stats.requests[fcm_token(1)] in (1, 2)
    assert mock.stats.delivered[fcm_token(1)] == 0


@pytest.mark.parametrize("fault", ["unavailable_next", "internal_next"])
async def test_unavailable_and_internal_back_off_and_retry(mock, client, behaviour, fault):
    setattr(behaviour, fault, 2)
    behaviour.retry_after_s = 0
    answer = await client().send(body(1))
    assert answer.decision is Decision.DELIVERED
    assert mock.stats.requests[fcm_token(1)] == 3 and mock.stats.delivered[fcm_token(1)] == 1


async def test_retries_are_bounded(mock, client, behaviour):
    behaviour.token_faults[fcm_token(1)] = TokenFault(503, None)
    behaviour.retry_after_s = 0
    answer = await client().send(body(1))
    assert (answer.decision, answer.status) == (Decision.BACKOFF, 503)
    assert mock.stats.requests[fcm_token(1)] == 1 + FAST.max_retries


async def test_third_party_auth_and_permission_denied_fail_naming_the_configuration(
        mock, client, behaviour, account, tls_files):
    behaviour.third_party_auth_next = 1
    answer = await client().send(body(1))
    assert (answer.decision, answer.code) == (Decision.FAIL, "THIRD_PARTY_AUTH_ERROR")
    assert "Firebase console" in answer.reason
    import dataclasses
    other = dataclasses.replace(account, project_id="someone-else")
    async with FCMClient(other, url=mock.url, ca_file=tls_files[0], retry=FAST) as c:
        answer = await c.send(body(2))
    assert (answer.decision, answer.status) == (Decision.FAIL, 403)
    assert "FCM_SERVICE_ACCOUNT" in answer.reason and "project_id" in answer.reason
    assert mock.stats.delivered[fcm_token(2)] == 0


async def test_an_expired_access_token_is_refreshed_once_and_the_send_goes_again(mock, client):
    c = client()
    assert (await c.send(body(1))).decision is Decision.DELIVERED
    mock.expire_access_tokens()
    answers = await fan_out(c, 500, first=10)
    assert {a.decision for a in answers.values()} == {Decision.DELIVERED}
    assert mock.stats.token_requests == 2  # the first token, then one refresh for 500 401s
    assert mock.stats.outcomes["OK"] == 501
    exactly_once(mock, answers)


async def test_thousands_of_sends_waiting_for_the_first_token_make_one_token_request(
        mock, client):
    answers = await fan_out(client(), 3000)
    assert {a.decision for a in answers.values()} == {Decision.DELIVERED}
    assert mock.stats.token_requests == 1
    exactly_once(mock, answers)


async def test_a_token_refused_by_the_endpoint_fails_every_send_naming_the_account(
        mock, client, account, tls_files, fcm_key):
    import dataclasses

    from tests.fcm.identity import rsa_pem
    stranger = dataclasses.replace(account, private_key=rsa_pem())
    async with FCMClient(stranger, url=mock.url, ca_file=tls_files[0], retry=FAST) as c:
        answers = await fan_out(c, 50)
    assert {a.decision for a in answers.values()} == {Decision.FAIL}
    assert "FCM_SERVICE_ACCOUNT" in next(iter(answers.values())).reason
    assert mock.stats.token_requests == 1 and sum(mock.stats.requests.values()) == 0


async def test_goaway_every_n_streams_loses_and_duplicates_nothing(mock, client, behaviour):
    behaviour.goaway_after = 37
    c = client(connections=3)
    answers = await fan_out(c, 2000)
    assert {a.decision for a in answers.values()} == {Decision.DELIVERED}
    assert mock.stats.goaways_sent > 10
    exactly_once(mock, answers)


async def test_low_stream_limits_are_respected_and_nothing_is_lost(mock, client, behaviour):
    behaviour.max_streams = 3
    c = client(connections=2)
    answers = await fan_out(c, 1000)
    assert {a.decision for a in answers.values()} == {Decision.DELIVERED}
    assert mock.stats.max_streams_open <= 3
    assert mock.stats.connections_opened <= 2
    exactly_once(mock, answers)


async def test_dropped_connections_resend_only_what_was_in_flight(mock, client, behaviour):
    behaviour.drop_after, behaviour.max_drops = 150, 3
    answers = await fan_out(client(connections=2), 1000)
    assert {a.decision for a in answers.values()} == {Decision.DELIVERED}
    assert mock.stats.drops == 3
    # Only a message whose answer was lost in a drop may have been accepted twice.
    twice = {t for t, n in mock.stats.delivered.items() if n > 1}
    assert twice <= set(mock.stats.lost_answers)
    assert all(mock.stats.delivered[t] >= 1 for t in answers)


async def test_many_streams_share_a_few_connections(mock, client, behaviour):
    behaviour.latency_s = 0.05
    c = client(connections=2, max_streams_per_connection=500)
    answers = await fan_out(c, 1000)
    assert len(answers) == 1000
    assert mock.stats.connections_opened == 2
    assert mock.stats.max_streams_open > 100
    exactly_once(mock, answers)


async def test_a_closed_client_answers_client_closed(mock, client):
    c = client()
    await c.close()
    answer = await c.send(body(1))
    assert (answer.decision, answer.code) == (Decision.BACKOFF, "ClientClosed")
