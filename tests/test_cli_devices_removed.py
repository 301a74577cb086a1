"""`owlmetry devices removed [--since]` as an operator runs it: a real process on a database
whose audit rows the store's own write (a dead token's answer) left."""

import json

from owlmetry.clock import iso_ms
from tests.store.test_device_removals import NOW, TOKEN, dead, recipient_with_device
from tests.test_cli import ok, run


async def test_lists_removed_devices_as_json_lines_never_the_token(store, database_url):
    found = []
    for n, token in enumerate((TOKEN, "cd" * 32)):
        user_id, device_id, notification_id = await recipient_with_device(store, 1, token)
        await store.save_outcomes("me", [dead(notification_id, device_id, NOW - 7)], [],
                                  NOW + n * 1000)
        found.append((user_id, device_id, notification_id))

    lines = ok("devices", "removed", "--database", database_url).splitlines()

    assert [json.loads(line) for line in lines] == [{
        "device_id": device_id, "user_id": user_id, "channel": "mobile_push",
        "platform": "ios", "environment": "production", "token": token[:8] + "…",
        "notification_id": notification_id, "status": 410, "reason": "Unregistered",
        "provider_timestamp": iso_ms(NOW - 7), "removed_at": iso_ms(NOW + n * 1000),
    } for n, ((user_id, device_id, notification_id), token) in enumerate(
        zip(found, (TOKEN, "cd" * 32)))]
    assert TOKEN not in "\n".join(lines)

    since = ok("devices", "removed", "--since", iso_ms(NOW + 1000), "--database", database_url)
    assert [json.loads(line)["device_id"] for line in since.splitlines()] == [found[1][1]]
    offset = ok("devices", "removed", "--since", "2027-01-15T10:00:01+01:00",
                "--database", database_url)
    assert offset == ""  # NOW is 2027-01-15T08:00:00Z
    refused = run("devices", "removed", "--since", "yesterday", "--database", database_url)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "--since" in refused.stderr and "Traceback" not in refused.stderr
