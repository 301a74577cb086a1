"""The retention's clean-up inside the server: it runs on its own schedule, on the app's store
and configuration, and stops with the app."""

import asyncio
import uuid

from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.retention import DAY_MS
from owlmetry.store import NotificationContent

NOW = 1_800_000_000_000


async def test_the_server_cleans_up_by_itself(config, aiohttp_client):
    client = await aiohttp_client(create_app(config,
                                             clock=lambda: NOW, cleanup_every_s=0.05))
    store = client.app[STORE]
    user = await store.create_user(str(uuid.uuid4()), "alice@example.com", 1)
    (read,) = await store.enqueue_notifications([(str(uuid.uuid4()), user.id)],
                                                NotificationContent("t", "Old"), [],
                                                NOW - 40 * DAY_MS)
    await store.set_read(user.id, read, True, NOW - 31 * DAY_MS)

    for _ in range(200):
        rows = await store.execute("SELECT deleted_at FROM notifications WHERE id = $1", read)
        if rows[0][0] is not None:
            break
        await asyncio.sleep(0.05)
    assert rows == [(NOW,)]
    await client.close()  # the app stops with its clean-up (a hang here would be the bug)
