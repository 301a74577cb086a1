"""The APNs provider's own rules: the payload of the contract and its size limit."""

import orjson
import pytest

from owlmetry.notify.providers.apns import APNs, apns_payload
from owlmetry.store import NotificationContent


@pytest.mark.parametrize("content", [
    NotificationContent("feedback.new", "New feedback", "Someone wrote", "/f/1", {"id": 7}),
    NotificationContent("t", 'Quotes " and \\ and ünïcode ✓', None, None, None),
    NotificationContent("t", "T", "", "", {}),
    NotificationContent("t", "T", "b", None, {"aps": "x", "link": "y", "type": "z",
                                              "notification_id": "w", "nested": {"aps": 1}}),
])
@pytest.mark.parametrize("unread", [0, 1, 123456])
def test_the_payload_is_the_contracts_and_data_never_replaces_its_keys(content, unread):
    payload = orjson.loads(apns_payload(content, "0f6c3d1e-0000-4000-8000-000000000000", unread))
    alert = {"title": content.title}
    if content.body is not None:
        alert["body"] = content.body
    expected = {key: value for key, value in (content.data or {}).items()
                if key not in ("aps", "link", "type", "notification_id")}
    expected["aps"] = {"alert": alert, "sound": "default", "badge": unread}
    if content.link is not None:
        expected["link"] = content.link
    expected |= {"type": content.type, "notification_id": "0f6c3d1e-0000-4000-8000-000000000000"}
    assert payload == expected


def test_a_notification_too_large_for_apns_is_refused_before_it_is_queued():
    APNs.check_content(NotificationContent("t", "T", "x" * 3700))
    with pytest.raises(ValueError, match="the limit is 4096"):
        APNs.check_content(NotificationContent("t", "T", "x" * 4000))
