"""Every FCM answer a sender can get, as the mock gives it over HTTP/2 (FCM's statuses, error
bodies and headers), and the decision it comes to: remove the device only when FCM says its
token is dead or invalid, wait, back off, refresh the access token, or fail with a reason an
operator can act on."""

import email.utils

import orjson
import pytest

from owlmetry.apns.mock import TokenFault
from owlmetry.fcm import Decision, classify

from .conftest import send, send_body


async def answer_to(tokens, h2, body: bytes, path: str | None = None, now: float | None = None):
    response = await send(h2, await tokens.current(), body, **({"path": path} if path else {}))
    retry_after = response.headers.get(b"retry-after")
    return response, classify(response.status, bytes(response.body),
                              retry_after.decode() if retry_after else None, now=now)


async def test_delivered(tokens, h2, mock):
    response, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert verdict.decision is Decision.DELIVERED
    assert verdict.message_name == orjson.loads(response.body)["name"]
    assert mock.stats.outcomes == {"OK": 1} and mock.stats.delivered["device-1"] == 1


@pytest.mark.parametrize(("token", "status", "code"), [
    ("dead-1", 404, "UNREGISTERED"),
    ("other-project-1", 403, "SENDER_ID_MISMATCH"),
    ("bad-1", 400, "INVALID_ARGUMENT"),
    ("has space", 400, "INVALID_ARGUMENT"),
    ("", 400, "INVALID_ARGUMENT"),
])
async def test_dead_and_invalid_tokens_remove_the_device(tokens, h2, mock, behaviour, token,
                                                         status, code):
    behaviour.dead_prefixes = ("dead-",)
    behaviour.mismatch_prefixes = ("other-project-",)
    behaviour.invalid_prefixes = ("bad-",)
    response, verdict = await answer_to(tokens, h2, send_body(token))
    assert (response.status, verdict.decision, verdict.code) == (status, Decision.REMOVE, code)
    assert mock.stats.outcomes == {code: 1} and not mock.stats.delivered


@pytest.mark.parametrize(("message", "reason"), [
    ({"data": {"n": 1}}, "Invalid value at 'message.data[0].value' (TYPE_STRING)"),
    ({"data": {"from": "x"}}, "Invalid data payload key: from"),
    ({"android": {"ttl": "1 day"}}, "Invalid value at 'message.android.ttl'"),
    ({"android": {"priority": "urgent"}}, "Invalid value at 'message.android.priority'"),
    ({"notification": {"title": 1}}, "Invalid value at 'message.notification.title'"),
    ({"colour": "red"}, 'Unknown name "colour"'),
])
async def test_a_bad_message_fails_with_fcms_words_and_keeps_the_device(tokens, h2, message, reason):
    response, verdict = await answer_to(tokens, h2, send_body("device-1", **message))
    assert (response.status, verdict.decision, verdict.code) == (400, Decision.FAIL, "INVALID_ARGUMENT")
    assert reason in verdict.reason


async def test_a_message_without_a_recipient_fails(tokens, h2):
    body = orjson.dumps({"message": {"notification": {"title": "t"}}})
    _, verdict = await answer_to(tokens, h2, body)
    assert verdict.decision is Decision.FAIL
    assert verdict.reason == "Recipient of the message is not set."


async def test_quota_waits_for_retry_after(tokens, h2, behaviour):
    behaviour.quota_next, behaviour.retry_after_s = 1, 7
    response, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert (response.status, verdict.decision, verdict.code) == (429, Decision.RETRY_AFTER,
                                                                  "QUOTA_EXCEEDED")
    assert verdict.retry_after_s == 7 and verdict.retry_delay(3) == 7


async def test_quota_without_retry_after_waits_for_the_next_minute(tokens, h2, behaviour):
    behaviour.quota_next = 1
    _, verdict = await answer_to(tokens, h2, send_body("device-1"), now=1_800_000_020.5)
    assert verdict.decision is Decision.RETRY_AFTER and verdict.retry_after_s == 39.5
    _, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert verdict.decision is Decision.DELIVERED  # the fault was for one send


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("unavailable_next", 503, "UNAVAILABLE"), ("internal_next", 500, "INTERNAL")])
async def test_unavailable_and_internal_back_off(tokens, h2, behaviour, fault, status, code):
    setattr(behaviour, fault, 2)
    for _ in range(2):
        response, verdict = await answer_to(tokens, h2, send_body("device-1"))
        assert (response.status, verdict.decision, verdict.code) == (status, Decision.BACKOFF, code)
    assert verdict.retry_after_s is None
    assert 0.5 <= verdict.retry_delay(0) <= 1.0 and 2.0 <= verdict.retry_delay(2) <= 4.0
    assert verdict.retry_delay(30) <= 60.0
    assert (await answer_to(tokens, h2, send_body("device-1")))[1].decision is Decision.DELIVERED


async def test_unavailable_with_retry_after_waits_that_long(tokens, h2, behaviour):
    behaviour.token_faults["device-1"] = TokenFault(503, "UNAVAILABLE", times=1)
    behaviour.retry_after_s = 30
    _, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert verdict.decision is Decision.BACKOFF and verdict.retry_delay(0) == 30


async def test_third_party_auth_error_names_the_firebase_configuration(tokens, h2, behaviour):
    behaviour.third_party_auth_next = 1
    response, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert (response.status, verdict.decision, verdict.code) == (401, Decision.FAIL,
                                                                  "THIRD_PARTY_AUTH_ERROR")
    assert "Firebase console" in verdict.reason


async def test_another_project_is_permission_denied_naming_the_service_account(tokens, h2):
    path = "/v1/projects/someone-else/messages:send"
    response, verdict = await answer_to(tokens, h2, send_body("device-1"), path=path)
    assert (response.status, verdict.decision, verdict.code) == (403, Decision.FAIL,
                                                                  "PERMISSION_DENIED")
    assert "FCM_SERVICE_ACCOUNT's project_id" in verdict.reason


async def test_a_wrong_url_is_a_failure_never_a_removal(tokens, h2):
    response, verdict = await answer_to(tokens, h2, send_body("device-1"), path="/v1/messages:send")
    assert (response.status, verdict.decision) == (404, Decision.FAIL)
    assert "FCM_URL" in verdict.reason


async def test_an_expired_access_token_asks_for_a_refresh(tokens, h2, mock):
    await tokens.current()
    mock.expire_access_tokens()
    response, verdict = await answer_to(tokens, h2, send_body("device-1"))
    assert (response.status, verdict.decision) == (401, Decision.REFRESH)


# What the mock never sends but FCM's front ends may.

def test_an_html_gateway_error_backs_off():
    verdict = classify(502, b"<!DOCTYPE html><title>Error 502 (Server Error)!!1</title>")
    assert (verdict.decision, verdict.reason) == (Decision.BACKOFF, "HTTP 502")


def test_fcms_invalid_token_message_alone_removes():
    body = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                   "The registration token is not a valid FCM registration token"}})
    assert classify(400, body).decision is Decision.REMOVE


def test_a_404_unregistered_needs_fcms_code():
    body = orjson.dumps({"error": {"code": 404, "status": "NOT_FOUND",
                                   "message": "Requested entity was not found."}})
    assert classify(404, body).decision is Decision.FAIL


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(1_800_000_090, usegmt=True)
    verdict = classify(429, b"{}", when, now=1_800_000_000.0)
    assert verdict.decision is Decision.RETRY_AFTER and verdict.retry_after_s == 90
