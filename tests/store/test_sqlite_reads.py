"""SQLite's reads: a dispatcher's bulk read, however slow, never holds up the reads requests make
(the health check, an API key, a JWT's user)."""

import asyncio
import threading
import uuid

import aiosqlite

from owlmetry.store import NotificationContent, deliveries, open_store

HOLD_S = 30  # the most the held read waits; the test releases it long before


async def hold_every_connection(store, entered: threading.Event, release: threading.Event):
    """`hold()` in SQL on every connection the engine has: it says it began, then waits for
    `release`. Whichever connection a claim reads on, it is held there."""
    def hold():
        entered.set()
        release.wait(HOLD_S)
        return 1
    for connection in vars(store.engine).values():
        if isinstance(connection, aiosqlite.Connection):
            await connection.create_function("hold", 0, hold)


async def test_a_held_claim_read_does_not_delay_health_or_auth_reads(tmp_path, monkeypatch):
    store = await open_store(f"sqlite:///{tmp_path}/owlmetry.db")
    entered, release = threading.Event(), threading.Event()
    try:
        await store.migrate()
        user = await store.create_user(str(uuid.uuid4()), "alice@example.com", 1)
        await store.create_api_key("k1", "server", None, "hash-1", 1)
        await store.enqueue_notifications([(str(uuid.uuid4()), user.id)],
                                          NotificationContent("t", "Title"), ["ios_push"], 1)
        await hold_every_connection(store, entered, release)
        # The claim's content read, made slow on purpose.
        slow = dict(deliveries.CLAIMED_NOTIFICATIONS)
        slow["sqlite"] = slow["sqlite"].replace("ON n.id = b.id", "ON n.id = b.id AND hold() = 1")
        assert slow["sqlite"] != deliveries.CLAIMED_NOTIFICATIONS["sqlite"]
        monkeypatch.setattr(deliveries, "CLAIMED_NOTIFICATIONS", slow)

        claim = asyncio.create_task(store.claim_deliveries("d1", 2, 30_000, 10))
        assert await asyncio.to_thread(entered.wait, HOLD_S)
        # Each must answer while the claim read is still held; a timeout here would mean it
        # queued behind it (the claim cannot end before `release`).
        await asyncio.wait_for(store.ping(), HOLD_S)
        assert (await asyncio.wait_for(store.api_key_by_hash("hash-1"), HOLD_S)).id == "k1"
        assert (await asyncio.wait_for(store.user_by_id(user.id), HOLD_S)).email == \
            "alice@example.com"
        assert not claim.done()
        release.set()
        (claimed,) = await claim
        assert claimed.user_id == user.id and claimed.unread == 1
    finally:
        release.set()
        await store.close()
