"""The Android message as FCM and the device get it: the contract's notification, data as
strings, the unread count, priority and TTL; FCM's reserved keys; the 4,096-byte limit, as the
producer's check and the mock (FCM's rule) measure it."""

import orjson
import pytest

from owlmetry.fcm import Decision, MessageTemplate, build_message, check_content, classify
from owlmetry.fcm.message import payload_limit, payload_size
from owlmetry.store import NotificationContent

from .conftest import SEND_PATH, send

NID = "0b6e1f7c-3f1e-4d2a-9a51-2f0c9a4b7e10"


def content(**fields) -> NotificationContent:
    fields.setdefault("type", "feedback.new")
    fields.setdefault("title", "New feedback")
    return NotificationContent(**fields)


def test_the_contracts_message():
    message = build_message("tok-1", content(body="Someone wrote", link="/feedback/1"), NID, 7)
    assert message == {
        "token": "tok-1",
        "notification": {"title": "New feedback", "body": "Someone wrote"},
        "data": {"link": "/feedback/1", "type": "feedback.new", "notification_id": NID},
        "android": {"priority": "HIGH", "ttl": "604800s",
                    "notification": {"notification_count": 7}},
    }


def test_without_body_or_link_they_are_left_out():
    message = build_message("tok-1", content(), NID, 0)
    assert message["notification"] == {"title": "New feedback"}
    assert message["data"] == {"type": "feedback.new", "notification_id": NID}


def test_data_values_are_strings_json_encoded_where_they_were_not():
    data = {"feedback_id": "f1", "count": 3, "ratio": 0.5, "ok": True, "none": None,
            "tags": ["a", "é"], "app": {"id": 1}}
    got = build_message("t", content(data=data), NID, 0)["data"]
    assert got == {"feedback_id": "f1", "count": "3", "ratio": "0.5", "ok": "true", "none": "null",
                   "tags": '["a","é"]', "app": '{"id":1}', "type": "feedback.new",
                   "notification_id": NID}
    assert all(isinstance(value, str) for value in got.values())


def test_the_contracts_keys_cannot_be_replaced_by_data():
    data = {"link": "/evil", "type": "other", "notification_id": "x", "keep": "1"}
    got = build_message("t", content(link="/feedback/1", data=data), NID, 0)["data"]
    assert got == {"keep": "1", "link": "/feedback/1", "type": "feedback.new", "notification_id": NID}


@pytest.mark.parametrize("key", ["from", "message_type", "google.c.a.e", "googleAnalytics", "gcm.n.e",
                                 "gcm_id"])
def test_keys_fcm_reserves_are_refused_by_name(key):
    with pytest.raises(ValueError, match=f"data key '{key}' is reserved by FCM"):
        check_content(content(data={key: "x"}))


@pytest.mark.parametrize("key", ["fromage", "notification", "Google", "my_gcm", "message"])
def test_keys_that_merely_look_alike_pass(key):
    check_content(content(data={key: "x"}))


@pytest.mark.parametrize("fields", [
    {}, {"body": "b", "link": "/x"}, {"data": {"a": 1, "b": "é€😀", "c": {"d": [1, 2]}}},
    {"body": "\"quoted\" \\ \n", "data": {}},
])
def test_the_template_writes_the_same_bytes_as_the_message(fields):
    c = content(**fields)
    template = MessageTemplate(c)
    for token, unread in (("tok-1", 0), ("x" * 300, 123456)):
        assert template.render(token, NID, unread) == orjson.dumps(
            {"message": build_message(token, c, NID, unread)})


def padded(size: int) -> dict:
    """A message whose payload is exactly `size` bytes."""
    message = build_message("tok-1", content(data={"pad": ""}), NID, 5)
    message["data"]["pad"] = "p" * (size - payload_size(message))
    assert payload_size(message) == size
    return message


def test_the_payload_is_counted_in_utf8_bytes_without_the_token():
    message = build_message("tok-1", content(title="é"), NID, 1)
    size = payload_size(message)
    assert size == len(orjson.dumps(message)) - len(b'"token":"tok-1",')
    assert payload_size({**message, "token": "t" * 4000}) == size
    assert payload_size(build_message("tok-1", content(title="e"), NID, 1)) == size - 1


def test_the_producers_check_stops_at_the_limit():
    assert payload_limit() == 4096
    check_content(content(body="b" * 3700))
    with pytest.raises(ValueError, match=r"an FCM payload of \d+ bytes; the limit is 4096"):
        check_content(content(body="b" * 4096))


def test_the_producers_check_counts_the_largest_unread_count():
    base = payload_size(build_message("", content(body=""), NID, 10**9))
    at_limit = content(body="b" * (4096 - base))
    check_content(at_limit)
    with pytest.raises(ValueError):
        check_content(content(body="b" * (4097 - base)))


async def test_the_mock_holds_fcm_to_the_same_limit(tokens, h2):
    access = await tokens.current()
    at_limit = await send(h2, access, orjson.dumps({"message": padded(4096)}))
    assert at_limit.status == 200
    over = await send(h2, access, orjson.dumps({"message": padded(4097)}))
    verdict = classify(over.status, bytes(over.body))
    assert (over.status, verdict.decision) == (400, Decision.FAIL)
    assert verdict.reason == "Request contains an invalid argument."


async def test_a_built_message_is_accepted_by_the_mock_as_sent(mock, tokens, h2):
    c = content(body="b", link="/x", data={"n": 2})
    body = MessageTemplate(c).render("device-1", NID, 3)
    answer = await send(h2, await tokens.current(), body)
    assert answer.status == 200
    assert orjson.loads(answer.body)["name"].startswith("projects/owl-test/messages/")
    assert mock.stats.payloads["device-1"] == build_message("device-1", c, NID, 3)
    assert SEND_PATH == "/v1/projects/owl-test/messages:send"
