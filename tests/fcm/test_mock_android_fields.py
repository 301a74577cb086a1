"""The mock FCM holds the Android part of a message to FCM HTTP v1's AndroidConfig and
AndroidNotification: a message with every push option is accepted and recorded as sent; an
unknown field, a number where a string goes or an unknown notification priority is FCM's 400."""

import copy

import orjson
import pytest

from owlmetry import push_options
from owlmetry.fcm import Decision, build_message, classify
from owlmetry.store import NotificationContent

from .conftest import send

NID = "0b6e1f7c-3f1e-4d2a-9a51-2f0c9a4b7e10"
RICH = NotificationContent("match.goal", "Goal!", "2-1", options=push_options.parse(
    {"priority": 5, "ttl_seconds": 60, "collapse_id": "m-7", "category": "GOAL",
     "interruption_level": "critical", "sound": "goal.caf"}, 1_800_000_000))


async def test_a_message_with_every_push_option_is_accepted_as_sent(mock, tokens, h2):
    message = build_message("device-1", RICH, NID, 4, ttl_s=60)
    answer = await send(h2, await tokens.current(), orjson.dumps({"message": message}))
    assert answer.status == 200
    assert mock.stats.payloads["device-1"]["android"] == {
        "priority": "NORMAL", "ttl": "60s", "collapse_key": "m-7",
        "notification": {"tag": "m-7", "sound": "goal.caf", "click_action": "GOAL",
                         "notification_priority": "PRIORITY_MAX", "notification_count": 4}}


@pytest.mark.parametrize("path,value,reason", [
    (("android", "thread_id"), "t", 'Unknown name "thread_id" at \'message.android\''),
    (("android", "notification", "mutable_content"), True,
     'Unknown name "mutable_content" at \'message.android.notification\''),
    (("android", "collapse_key"), 7, "Invalid value at 'message.android.collapse_key'"),
    (("android", "notification", "sound"), 5,
     "Invalid value at 'message.android.notification.sound'"),
    (("android", "notification", "notification_priority"), "PRIORITY_URGENT",
     "Invalid value at 'message.android.notification.notification_priority'"),
])
async def test_what_fcm_does_not_know_is_refused(tokens, h2, path, value, reason):
    message = copy.deepcopy(build_message("device-2", RICH, NID, 4, ttl_s=60))
    where = message
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    answer = await send(h2, await tokens.current(), orjson.dumps({"message": message}))
    verdict = classify(answer.status, bytes(answer.body))
    assert (answer.status, verdict.decision) == (400, Decision.FAIL)
    assert reason in verdict.reason
