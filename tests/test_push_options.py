"""The push options' rules (owlmetry.push_options): what each field takes, Apple's rules between
them, and their stored form."""

import pytest

from owlmetry import push_options
from owlmetry.push_options import DEFAULT, PushOptions

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def parse(**body) -> PushOptions:
    return push_options.parse(body, NOW)


def test_no_field_is_todays_push():
    assert parse() == DEFAULT == PushOptions(
        "alert", 10, None, None, None, None, False, None, None, "default", "unread")
    # null is "not given" for every field but sound.
    nulls = dict.fromkeys(push_options.REQUEST_FIELDS)
    del nulls["sound"]
    assert parse(**nulls) == DEFAULT


def test_every_field_of_an_alert():
    options = parse(priority=5, ttl_seconds=3600, collapse_id="score-7", thread_id="match-7",
                    category="GOAL", mutable_content=True, interruption_level="time-sensitive",
                    relevance_score=0.75, sound="goal.caf", badge="none")
    assert options == PushOptions("alert", 5, NOW + 3600, "score-7", "match-7", "GOAL", True,
                                  "time-sensitive", 0.75, "goal.caf", "none")


def test_a_background_push_is_priority_5_silent_and_without_badge():
    assert parse(push_type="background") == PushOptions(
        "background", 5, sound=None, badge="none")
    assert parse(push_type="background", priority=5, sound=None, badge="none",
                 mutable_content=False, collapse_id="c", ttl_seconds=0).expiration == 0


@pytest.mark.parametrize("body,message", [
    ({"push_type": "background", "priority": 10},
     "priority must be 5 for push_type background (Apple refuses a background push with "
     "priority 10)"),
    ({"push_type": "background", "priority": 1}, "priority must be 5 for push_type background"),
    ({"push_type": "background", "sound": "x.caf"}, "sound cannot be used with push_type "
                                                    "background (a background push has no "
                                                    "alert, sound or badge)"),
    ({"push_type": "background", "badge": "unread"}, "badge cannot be used with push_type"),
    ({"push_type": "background", "mutable_content": True}, "mutable_content cannot be used"),
    ({"push_type": "background", "thread_id": "t"}, "thread_id cannot be used"),
    ({"push_type": "background", "category": "c"}, "category cannot be used"),
    ({"push_type": "background", "interruption_level": "active"}, "interruption_level cannot"),
    ({"push_type": "background", "relevance_score": 0}, "relevance_score cannot be used"),
    ({"push_type": "voip"}, "push_type must be one of alert, background"),
    ({"push_type": 1}, "push_type must be one of alert, background"),
    ({"priority": 7}, "priority must be 10, 5 or 1"),
    ({"priority": "10"}, "priority must be 10, 5 or 1"),
    ({"priority": 10.0}, "priority must be 10, 5 or 1"),
    ({"priority": True}, "priority must be 10, 5 or 1"),
    ({"ttl_seconds": 60, "expires_at": "2027-01-15T09:00:00Z"},
     "expires_at and ttl_seconds cannot both be given"),
    ({"ttl_seconds": -1}, "ttl_seconds must be a whole number of seconds from 0 (try once) to "
                          "2419200 (28 days)"),
    ({"ttl_seconds": 2419201}, "ttl_seconds must be a whole number"),
    ({"ttl_seconds": 1.5}, "ttl_seconds must be a whole number"),
    ({"ttl_seconds": "60"}, "ttl_seconds must be a whole number"),
    ({"expires_at": "2027-01-15T09:00:00"}, "expires_at must be an ISO 8601 date and time with "
                                            "its offset, e.g. 2026-12-24T18:00:00Z"),
    ({"expires_at": "2027-01-15"}, "expires_at must be an ISO 8601 date and time"),
    ({"expires_at": "tomorrow"}, "expires_at must be an ISO 8601 date and time"),
    ({"expires_at": NOW + 60}, "expires_at must be an ISO 8601 date and time"),
    ({"expires_at": "2027-01-15T08:00:00Z"}, "expires_at must be in the future"),
    ({"expires_at": "2027-02-13T08:00:01Z"}, "expires_at must be at most 28 days ahead"),
    ({"collapse_id": "x" * 65}, "collapse_id must be a non-empty string of at most 64 bytes "
                                "(UTF-8)"),
    ({"collapse_id": "é" * 33}, "collapse_id must be a non-empty string of at most 64 bytes"),
    ({"collapse_id": ""}, "collapse_id must be a non-empty string"),
    ({"collapse_id": 5}, "collapse_id must be a non-empty string"),
    ({"thread_id": " "}, "thread_id must be a non-empty string of at most 256 characters"),
    ({"thread_id": "t" * 257}, "thread_id must be a non-empty string of at most 256"),
    ({"category": ["GOAL"]}, "category must be a non-empty string of at most 256 characters"),
    ({"mutable_content": 1}, "mutable_content must be true or false"),
    ({"mutable_content": "true"}, "mutable_content must be true or false"),
    ({"interruption_level": "urgent"}, "interruption_level must be one of passive, active, "
                                       "time-sensitive, critical"),
    ({"relevance_score": 1.01}, "relevance_score must be a number from 0 to 1"),
    ({"relevance_score": -0.1}, "relevance_score must be a number from 0 to 1"),
    ({"relevance_score": True}, "relevance_score must be a number from 0 to 1"),
    ({"relevance_score": "0.5"}, "relevance_score must be a number from 0 to 1"),
    ({"sound": ""}, "sound must be a sound's name (a non-empty string of at most 256 "
                    "characters), or null for a silent push"),
    ({"sound": 1}, "sound must be a sound's name"),
    ({"badge": 3}, "badge must be one of unread, none"),
    ({"badge": "count"}, "badge must be one of unread, none"),
])
def test_bad_fields_are_refused_naming_the_field(body, message):
    with pytest.raises(ValueError) as refused:
        parse(**body)
    assert str(refused.value).startswith(message)


def test_expiry_from_a_time_or_a_ttl():
    assert parse(expires_at="2027-01-15T09:00:00Z").expiration == NOW + 3600
    assert parse(expires_at="2027-01-15T10:00:00+01:00").expiration == NOW + 3600
    assert parse(expires_at="2027-01-15T08:00:00.2Z").expiration == NOW + 1  # whole seconds
    assert parse(expires_at="2027-02-12T08:00:00Z").expiration == NOW + 28 * 86400
    assert parse(ttl_seconds=0).expiration == 0  # try once
    assert parse(ttl_seconds=2419200).expiration == NOW + 2419200


def test_an_expiry_says_when_it_has_passed_and_what_is_left():
    timed, once = parse(ttl_seconds=60), parse(ttl_seconds=0)
    assert not timed.expired(NOW + 59) and timed.expired(NOW + 60)
    assert not once.expired(NOW + 10**6) and not DEFAULT.expired(NOW + 10**9)
    assert timed.ttl_s(NOW + 20, 999) == 40 and timed.ttl_s(NOW + 100, 999) == 0
    assert once.ttl_s(NOW, 999) == 0 and DEFAULT.ttl_s(NOW, 999) == 999


def test_a_silent_alert_keeps_its_other_fields():
    options = parse(sound=None, relevance_score=1)
    assert options.sound is None and options.relevance_score == 1 and options.badge == "unread"


@pytest.mark.parametrize("options", [
    DEFAULT, parse(push_type="background", ttl_seconds=0), parse(sound=None),
    parse(priority=1, expires_at="2027-01-16T08:00:00Z", collapse_id="é" * 32,
          thread_id="t", category="c", mutable_content=True, interruption_level="critical",
          relevance_score=0.5, sound="s.caf", badge="none"),
])
def test_the_stored_form_gives_the_same_options_back(options):
    text = push_options.stored(options)
    assert push_options.from_stored(text) == options
    assert (text is None) == (options == DEFAULT)  # today's push stores nothing


def test_the_stored_form_names_only_what_differs():
    assert push_options.stored(parse(sound=None, ttl_seconds=0)) == '{"expiration":0,"sound":null}'
    assert push_options.from_stored(None) == push_options.from_stored("") == DEFAULT


@pytest.mark.parametrize("text", ["2027-01-15T09:00Z", "2027-01-15T08:59:59.123456789+00:00",
                                  "2027-01-15T04:00:00-05:00"])
def test_expires_at_takes_rfc_3339_times_seconds_optional(text):
    assert parse(expires_at=text).expiration == NOW + 3600


@pytest.mark.parametrize("text", ["20270115T090000Z", "2027-01-15 09:00:00Z",
                                  "2027-01-15T09:00:00z", "2027-01-15T09:00:00+0100",
                                  "2027-02-30T09:00:00Z", "2027-01-15T25:00:00Z"])
def test_expires_at_refuses_other_spellings_and_days_that_do_not_exist(text):
    with pytest.raises(ValueError, match="expires_at must be an ISO 8601 date and time"):
        parse(expires_at=text)
