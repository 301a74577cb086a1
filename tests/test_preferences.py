"""Notification preferences: the merge rules the Owlmetry apps rely on, the checks on what a
client may store, and the defaults where a user chose nothing."""

import pytest

from owlmetry.preferences import (
    Defaults,
    PreferenceError,
    merge,
    parse_defaults,
    parse_patch,
    shown,
)


def types_patch(types: dict) -> dict:
    return parse_patch({"notifications": {"types": types}})


def test_a_patch_of_one_channel_keeps_the_other_channels_of_the_type():
    # The iOS app sends one type and channel per PATCH.
    stored = merge(None, types_patch({"feedback.new": {"email": False}}))
    stored = merge(stored, types_patch({"feedback.new": {"mobile_push": False}}))
    stored = merge(stored, types_patch({"issue.new": {"email": True}}))
    assert stored["notifications"]["types"] == {
        "feedback.new": {"email": False, "mobile_push": False},
        "issue.new": {"email": True},
    }


def test_null_puts_a_channel_back_to_its_default_and_an_empty_type_goes():
    stored = merge(None, types_patch({"feedback.new": {"email": False, "in_app": False}}))
    stored = merge(stored, types_patch({"feedback.new": {"email": None}}))
    assert stored["notifications"]["types"] == {"feedback.new": {"in_app": False}}
    stored = merge(stored, types_patch({"feedback.new": {"in_app": None}}))
    assert stored["notifications"]["types"] == {}


def test_ui_members_merge_like_upstream_and_the_rest_stays():
    stored = merge(None, types_patch({"issue.new": {"email": True}}))
    stored = merge(stored, parse_patch({"ui": {"dashboard": {"magnitudeWindowHours": 24}}}))
    stored = merge(stored, parse_patch({"ui": {"dashboard": {"sparklineWindowDays": 7}}}))
    assert stored["ui"] == {"dashboard": {"magnitudeWindowHours": 24, "sparklineWindowDays": 7}}
    assert stored["notifications"]["types"] == {"issue.new": {"email": True}}


def test_shown_preferences_always_have_notification_types():
    assert shown(None) == {"notifications": {"types": {}}}
    assert shown({"ui": {"a": 1}}) == {"ui": {"a": 1}, "notifications": {"types": {}}}


@pytest.mark.parametrize("body, message", [
    ([], "preferences must be an object"),
    ({"theme": "dark"}, "unknown member 'theme'"),
    ({"notifications": []}, "preferences.notifications must be"),
    ({"notifications": {"types": {}, "x": 1}}, "preferences.notifications must be"),
    ({"notifications": {"types": []}}, "types must be an object"),
    ({"notifications": {"types": {"feedback.new": {"sms": True}}}}, "unknown channel 'sms'"),
    ({"notifications": {"types": {"feedback.new": {"email": "yes"}}}}, "must be true, false or null"),
    ({"notifications": {"types": {"feedback.new": True}}}, "must be an object of channels"),
    ({"notifications": {"types": {"": {"email": True}}}}, "1 to 100 printable characters"),
    ({"notifications": {"types": {"x" * 101: {"email": True}}}}, "1 to 100 printable"),
    ({"notifications": {"types": {"a\nb": {"email": True}}}}, "1 to 100 printable"),
    ({"notifications": {"types": {f"t{i}": {"email": True} for i in range(201)}}}, "at most 200"),
    ({"ui": "dark"}, "preferences.ui must be an object"),
    ({"ui": {"blob": "x" * 5000}}, "at most 4096 bytes"),
    ({"version": "1"}, "whole number"),
])
def test_bad_preferences_say_what_is_wrong(body, message):
    with pytest.raises(PreferenceError, match=message.replace("(", r"\(")):
        parse_patch(body)


def test_the_stored_types_are_bounded_across_patches():
    stored = merge(None, types_patch({f"t{i}": {"email": True} for i in range(200)}))
    with pytest.raises(PreferenceError, match="at most 200"):
        merge(stored, types_patch({"one.more": {"email": True}}))


def test_defaults_are_upstreams_for_its_types_and_inbox_and_push_for_others():
    defaults = Defaults()
    assert defaults.channels("issue.digest", None) == {"email"}
    assert defaults.channels("feedback.new", None) == {"in_app", "email", "mobile_push"}
    assert defaults.channels("questionnaire.response_new", None) == {"in_app"}
    assert defaults.channels("build.finished", None) == {"in_app", "mobile_push"}


def test_a_users_choice_wins_over_the_default():
    stored = merge(None, types_patch({"issue.digest": {"mobile_push": True, "email": False},
                                      "build.finished": {"in_app": False}}))
    defaults = Defaults()
    assert defaults.channels("issue.digest", stored) == {"mobile_push"}
    assert defaults.channels("build.finished", stored) == {"mobile_push"}
    assert defaults.channels("feedback.new", stored) == {"in_app", "email", "mobile_push"}


def test_operator_defaults_lay_over_the_built_in_ones_channel_by_channel():
    defaults = parse_defaults('{"feedback.new": {"email": false}, "*": {"email": true},'
                              ' "build.finished": {"mobile_push": false}}')
    assert defaults.channels("feedback.new", None) == {"in_app", "mobile_push"}
    assert defaults.channels("anything.else", None) == {"in_app", "email", "mobile_push"}
    assert defaults.channels("build.finished", None) == {"in_app", "email"}
    assert defaults.channels("issue.digest", None) == {"email"}  # upstream's, untouched


@pytest.mark.parametrize("text, message", [
    ("not json", "must be a JSON object"),
    ("[]", "types must be an object"),
    ('{"a": {"email": null}}', "must be true or false"),
    ('{"a": {"fax": true}}', "unknown channel 'fax'"),
])
def test_bad_operator_defaults_are_refused(text, message):
    with pytest.raises(PreferenceError, match=message):
        parse_defaults(text)
