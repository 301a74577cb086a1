"""The store interface, the same test body on a real SQLite file and a real PostgreSQL database."""

import asyncio
import uuid

import pytest

from owlmetry.store import (
    DeleteResult,
    DeliveryEnd,
    DeliveryStatus,
    DeviceRegistration,
    EmailTaken,
    NotificationContent,
    PushOutcome,
    PushRecord,
    open_store,
)


def registration(token: str, **fields) -> DeviceRegistration:
    values = {"environment": "production", "app_version": None, "device_model": None,
              "os_version": None, **fields}
    return DeviceRegistration(channel="ios_push", token=token, **values)


async def new_user(store, email=None):
    user = await store.create_user(str(uuid.uuid4()), email or f"{uuid.uuid4().hex}@example.com", 1)
    return user.id


async def test_migrate_runs_again_without_harm(store, database_url):
    user_id = await new_user(store)
    await store.migrate()
    again = await open_store(database_url)
    try:
        await again.migrate()
        assert await again.user_exists(user_id)
    finally:
        await again.close()


async def test_first_setting_wins(store):
    assert await store.setting("jwt_secret", "first") == "first"
    assert await store.setting("jwt_secret", "second") == "first"


async def test_concurrent_first_settings_agree(store):
    values = await asyncio.gather(*(store.setting("k", f"v{n}") for n in range(20)))
    assert len(set(values)) == 1


async def test_emails_are_unique_whatever_their_case(store):
    user = await store.create_user(str(uuid.uuid4()), "Alice@Example.com", 1)
    assert user.email == "alice@example.com"
    with pytest.raises(EmailTaken):
        await store.create_user(str(uuid.uuid4()), "alice@EXAMPLE.com", 2)
    assert (await store.user_by_email("ALICE@example.com")).id == user.id
    assert await store.user_by_email("bob@example.com") is None


async def test_api_keys_are_found_by_hash_and_revoked_once(store):
    key = await store.create_api_key("k1", "server", "deploy bot", "hash-1", 10)
    assert await store.api_key_by_hash("hash-1") == key
    assert await store.api_key_by_hash("hash-2") is None
    assert await store.revoke_api_key("k1", 20)
    assert not await store.revoke_api_key("k1", 30)
    assert (await store.api_key_by_hash("hash-1")).revoked_at == 20
    assert [k.id for k in await store.list_api_keys()] == ["k1"]


async def test_register_inserts_then_refreshes_in_place(store):
    user_id = await new_user(store)
    first = await store.register_device("d1", user_id, registration("aa" * 16, app_version="1"), 100)
    second = await store.register_device("d2", user_id, registration("aa" * 16, environment="sandbox"), 200)
    assert (first.id, first.created_at, first.last_seen_at) == ("d1", 100, 100)
    assert (second.id, second.created_at, second.last_seen_at) == ("d1", 100, 200)
    assert (second.environment, second.app_version) == ("sandbox", None)


async def test_register_for_a_missing_user_stores_nothing(store):
    assert await store.register_device("d1", str(uuid.uuid4()), registration("aa" * 16), 1) is None
    assert await store.list_devices(str(uuid.uuid4())) is None


async def test_list_orders_by_last_seen_then_created_then_id(store):
    user_id = await new_user(store)
    for device_id, token, seen, created in [
        ("c", "01" * 16, 50, 10), ("b", "02" * 16, 50, 10), ("a", "03" * 16, 50, 20),
        ("d", "04" * 16, 90, 5), ("e", "05" * 16, 10, 10),
    ]:
        await store.register_device(device_id, user_id, registration(token), created)
        await store.register_device("unused", user_id, registration(token), seen)
    assert [d.id for d in await store.list_devices(user_id)] == ["d", "a", "b", "c", "e"]


async def test_a_user_without_devices_lists_empty(store):
    assert await store.list_devices(await new_user(store)) == []


async def test_delete_outcomes(store):
    owner, other = await new_user(store), await new_user(store)
    await store.register_device("d1", owner, registration("aa" * 16), 1)
    assert await store.delete_device(other, "d1") is DeleteResult.NOT_FOUND
    assert await store.delete_device(str(uuid.uuid4()), "d1") is DeleteResult.NO_USER
    assert await store.delete_device(owner, "d1") is DeleteResult.DELETED
    assert await store.delete_device(owner, "d1") is DeleteResult.NOT_FOUND


async def test_a_second_store_on_the_same_database_sees_the_writes(store, database_url):
    user_id = await new_user(store)
    await store.register_device("d1", user_id, registration("aa" * 16), 1)
    other = await open_store(database_url)
    try:
        assert [d.id for d in await other.list_devices(user_id)] == ["d1"]
        # 99 in all: within the cap of devices per user (100).
        writes = [other.register_device(f"x{n}", user_id, registration(f"{n:032x}"), 2)
                  for n in range(49)]
        writes += [store.register_device(f"y{n}", user_id, registration(f"{n + 100:032x}"), 2)
                   for n in range(49)]
        assert all(await asyncio.gather(*writes))
    finally:
        await other.close()
    assert len(await store.list_devices(user_id)) == 99


async def test_an_answers_write_of_more_rows_than_a_statement_takes_records_them_all(store):
    # SQLite writes a batch of answers in statements of `rows_per_statement` rows.
    user = await store.create_user(str(uuid.uuid4()), "many@example.com", 1)
    ids = await store.enqueue_notifications(
        [(str(uuid.uuid4()), user.id) for _ in range(300)], NotificationContent("t", "T"),
        ["mobile_push"], 1)
    claims = await store.claim_deliveries("d1", 2, 60_000, 1_000)
    assert len(claims) == 300
    records = [PushRecord(claim.notification_id, f"device-{n}", "mobile_push",
                          PushOutcome.DELIVERED, 200, None, None, "ios", "production", None,
                          None, 2) for claim in claims for n in range(2)]
    ends = [DeliveryEnd(claim.notification_id, "mobile_push", DeliveryStatus.SENT, None,
                        None, (2, 0, 0, 0)) for claim in claims]
    assert len(await store.save_outcomes("d1", records, ends, 3)) == 600
    progress = await store.progress(ids)
    assert progress.deliveries == {DeliveryStatus.SENT: 300}
    assert progress.pushes == {PushOutcome.DELIVERED: 600}
