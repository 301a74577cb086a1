"""Push options as each provider writes them: the APNs payload and headers, the FCM message
(template and builder alike), and the size checks made with the real payload."""

import dataclasses

import orjson
import pytest

from owlmetry import push_options
from owlmetry.fcm import MessageTemplate, build_message
from owlmetry.fcm import check_content as check_fcm
from owlmetry.fcm.message import ttl_for
from owlmetry.notify.providers.apns import APNs, PayloadTemplate, apns_payload
from owlmetry.notify.providers.expiry import expired_answer
from owlmetry.store import NotificationContent, PushOutcome

NID = "0f6c3d1e-0000-4000-8000-000000000000"
NOW = 1_800_000_000
BASE = NotificationContent("match.goal", "Goal!", "2-1", "/m/7", {"minute": 88})


def rich(**fields) -> NotificationContent:
    return dataclasses.replace(BASE, options=push_options.parse(fields, NOW))


EVERYTHING = dict(priority=5, expires_at="2027-01-15T09:00:00Z", collapse_id="m-7",
                  thread_id="match-7", category="GOAL", mutable_content=True,
                  interruption_level="time-sensitive", relevance_score=0.5, sound="goal.caf")


def test_an_alert_with_every_option():
    content = rich(**EVERYTHING)
    assert orjson.loads(apns_payload(content, NID, 3)) == {
        "minute": 88,
        "aps": {"alert": {"title": "Goal!", "body": "2-1"}, "sound": "goal.caf",
                "thread-id": "match-7", "category": "GOAL", "mutable-content": 1,
                "interruption-level": "time-sensitive", "relevance-score": 0.5, "badge": 3},
        "link": "/m/7", "type": "match.goal", "notification_id": NID}
    assert PayloadTemplate(content).headers == {
        "push_type": "alert", "priority": 5, "expiration": NOW + 3600, "collapse_id": "m-7"}
    assert build_message("tok", content, NID, 3, ttl_s=1200)["android"] == {
        "priority": "NORMAL", "ttl": "1200s", "collapse_key": "m-7",
        "notification": {"tag": "m-7", "sound": "goal.caf", "click_action": "GOAL",
                         "notification_priority": "PRIORITY_HIGH", "notification_count": 3}}


def test_without_options_both_are_todays():
    assert orjson.loads(apns_payload(BASE, NID, 2))["aps"] == {
        "alert": {"title": "Goal!", "body": "2-1"}, "sound": "default", "badge": 2}
    assert PayloadTemplate(BASE).headers == {
        "push_type": "alert", "priority": 10, "expiration": None, "collapse_id": None}
    assert build_message("tok", BASE, NID, 2)["android"] == {
        "priority": "HIGH", "ttl": "604800s", "notification": {"notification_count": 2}}


def test_a_background_push_is_content_available_alone_and_data_only_on_fcm():
    content = rich(push_type="background", collapse_id="sync")
    assert orjson.loads(apns_payload(content, NID, 9)) == {
        "minute": 88, "aps": {"content-available": 1}, "link": "/m/7", "type": "match.goal",
        "notification_id": NID}
    assert PayloadTemplate(content).headers["push_type"] == "background"
    assert PayloadTemplate(content).headers["priority"] == 5
    message = build_message("tok", content, NID, 9)
    assert "notification" not in message
    assert message["android"] == {"priority": "NORMAL", "ttl": "604800s", "collapse_key": "sync"}
    assert message["data"] == {"minute": "88", "link": "/m/7", "type": "match.goal",
                               "notification_id": NID}


def test_silent_and_without_badge():
    content = rich(sound=None, badge="none", ttl_seconds=0)
    assert orjson.loads(apns_payload(content, NID, 4))["aps"] == {
        "alert": {"title": "Goal!", "body": "2-1"}}
    assert PayloadTemplate(content).headers["expiration"] == 0
    assert build_message("tok", content, NID, 4)["android"] == {"priority": "HIGH",
                                                                 "ttl": "0s"}


@pytest.mark.parametrize("fields", [
    {}, EVERYTHING, {"push_type": "background"}, {"badge": "none"},
    {"badge": "none", "category": "c"}, {"sound": None, "interruption_level": "passive"},
    {"priority": 1, "ttl_seconds": 0, "collapse_id": "é"},
])
def test_the_templates_write_what_the_builders_do(fields):
    content = rich(**fields)
    for unread in (0, 987654):
        assert PayloadTemplate(content).render(NID, unread) == apns_payload(content, NID, unread)
        assert MessageTemplate(content, ttl_s=77).render("tok", NID, unread) == orjson.dumps(
            {"message": build_message("tok", content, NID, unread, ttl_s=77)})


def test_fcm_ttl_is_what_is_left_of_the_expiry_when_sent():
    options = rich(ttl_seconds=600).options
    assert ttl_for(options, NOW + 100) == 500
    assert ttl_for(options, NOW + 1000) == 0
    assert ttl_for(options, NOW - 10**8) == 28 * 24 * 3600  # never past FCM's longest
    assert ttl_for(rich(ttl_seconds=0).options, NOW) == 0
    assert ttl_for(BASE.options, NOW) == 7 * 24 * 3600


def test_the_size_checks_count_the_options():
    zero = "00000000-0000-0000-0000-000000000000"
    base = len(apns_payload(dataclasses.replace(BASE, data={"pad": ""}), zero, 10**9))
    at_limit = dataclasses.replace(BASE, data={"pad": "p" * (4096 - base)})
    APNs.check_content(at_limit)
    with pytest.raises(ValueError, match="the notification makes an APNs payload of 4111 bytes"):
        # `,"category":"c"`: 15 bytes more
        APNs.check_content(dataclasses.replace(at_limit, options=rich(category="c").options))
    # Without a badge (or as a background push, which carries no alert) the same fits.
    APNs.check_content(dataclasses.replace(at_limit, options=rich(
        badge="none", category="c").options))
    long_body = NotificationContent("t", "T", "b" * 4000, None, {"pad": "p" * 2000})
    with pytest.raises(ValueError):
        APNs.check_content(long_body)
    background = dataclasses.replace(long_body, options=rich(push_type="background").options)
    APNs.check_content(background)
    check_fcm(background)
    with pytest.raises(ValueError, match="an FCM payload of"):
        check_fcm(long_body)


def test_past_its_expiry_a_notification_fails_without_being_sent():
    options = rich(ttl_seconds=60).options
    assert expired_answer(options, NOW + 59) is None
    answer = expired_answer(options, NOW + 60)
    assert answer.outcome == PushOutcome.FAILED
    assert answer.reason == f"expired before it could be sent (expiration {NOW + 60})"
    assert expired_answer(rich(ttl_seconds=0).options, NOW + 10**6) is None
