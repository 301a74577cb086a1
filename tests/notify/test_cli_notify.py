"""`owlmetry notify` as an operator runs it, against mock APNs hosts, on both databases."""

import asyncio
import os
import pty
import select
import sys
import uuid

import orjson

from owlmetry.clock import now_ms
from owlmetry.store import DeviceRegistration
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC
from tests.notify.conftest import token, user_with_devices


def apns_env(mocks, tls_files, auth_key) -> dict:
    return {"APNS_KEY_ID": KEY_ID, "APNS_TEAM_ID": TEAM_ID, "APNS_BUNDLE_ID": TOPIC,
            "APNS_KEY_P8": auth_key.decode(), "APNS_CA_FILE": tls_files[0],
            "APNS_PRODUCTION_URL": f"https://127.0.0.1:{mocks.production.port}",
            "APNS_SANDBOX_URL": f"https://127.0.0.1:{mocks.sandbox.port}"}


async def owlmetry(*args, env=None) -> tuple[int, str, str]:
    """Run the command without blocking the loop that serves the mocks."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "APNS_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "owlmetry", *args, env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def email_deliveries(store) -> int:
    """The email deliveries the enqueue made (which ones the recipients' preferences choose)."""
    ((count,),) = await store.execute(
        "SELECT count(*) FROM notification_deliveries WHERE channel = 'email'")
    return count


async def test_notify_wait_delivers_and_sums_up_the_devices(
        store, database_url, mocks, tls_files, auth_key):
    user = await store.create_user(str(uuid.uuid4()), "dana@example.com", now_ms())
    tokens = [token(i) for i in range(3)]
    for device_token, environment in zip(tokens, ["production", "sandbox", "production"]):
        await store.register_device(str(uuid.uuid4()), user.id, DeviceRegistration(
            "ios_push", device_token, environment, None, None, None), now_ms())
    other_id, (other_token,) = await user_with_devices(store, ["sandbox"], 10)
    mocks.production.behaviour.unregistered[tokens[2]] = now_ms() + 1000

    code, out, err = await owlmetry(
        "notify", "--user", "DANA@example.com", "--user", other_id, "--title", "Hello",
        "--body", "there", "--data", '{"k": 1}', "--wait", "--database", database_url,
        env=apns_env(mocks, tls_files, auth_key))

    assert code == 0, err
    *ids, last = out.strip().splitlines()
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)
    # Every email delivery the enqueue made is skipped (no SMTP_URL here), one answer each.
    emails = await email_deliveries(store)
    assert orjson.loads(last) == {"notifications": 2, "delivered": 3, "removed": 1,
                                  "failed": 0, "skipped": emails}
    assert mocks.production.stats.payloads[tokens[0]]["k"] == 1
    assert mocks.sandbox.stats.delivered[tokens[1]] == 1
    assert mocks.sandbox.stats.delivered[other_token] == 1
    assert len(await store.list_devices(user.id)) == 2


async def test_notify_without_apns_credentials_skips_and_says_so(store, database_url):
    user_id, _ = await user_with_devices(store, ["production", "sandbox"], 0)
    code, out, err = await owlmetry("notify", "--user", user_id, "--title", "Hi", "--wait",
                                    "--database", database_url)
    assert code == 0, err
    assert orjson.loads(out.strip().splitlines()[-1]) == {
        "notifications": 1, "delivered": 0, "removed": 0, "failed": 0,
        "skipped": 2 + await email_deliveries(store)}
    rows = await store.execute("SELECT status, reason FROM notification_deliveries "
                               "WHERE channel = 'mobile_push'")
    assert rows[0][0] == "skipped" and "APNS_KEY_ID" in rows[0][1]


async def test_notify_without_wait_leaves_the_work_to_the_server(store, database_url):
    user_id, _ = await user_with_devices(store, ["production"], 0)
    code, out, err = await owlmetry("notify", "--user", user_id, "--title", "Hi",
                                    "--database", database_url)
    assert code == 0, err
    (notification_id,) = out.split()
    assert (await store.progress([notification_id])).deliveries == {
        "pending": 1 + await email_deliveries(store)}
    assert await store.execute("SELECT status FROM notification_deliveries "
                               "WHERE channel = 'mobile_push'") == [("pending",)]


async def test_notify_refuses_unknown_users_and_bad_input_before_enqueuing(store, database_url):
    user_id, _ = await user_with_devices(store, ["production"], 0)
    cases = [
        (["--user", user_id, "--user", "ghost@example.com", "--title", "x"], 1, "ghost@example.com"),
        (["--user", user_id, "--title", "x", "--data", "[1]"], 2, "must be a JSON object"),
        (["--user", user_id, "--title", "x", "--data", "{"], 2, "not JSON"),
        (["--user", user_id, "--title", "x", "--body", "y" * 5000], 1, "APNs payload"),
        (["--title", "x"], 2, "--user"),
    ]
    for args, expected_code, message in cases:
        code, out, err = await owlmetry("notify", *args, "--database", database_url)
        assert (code, out) == (expected_code, ""), err
        assert message in err and "Traceback" not in err
    assert await store.unread_count(user_id) == 0


async def test_notify_wait_draws_a_progress_bar_on_a_terminal(store, database_url):
    user_id, _ = await user_with_devices(store, ["production"], 0)
    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "APNS_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "owlmetry", "notify", "--user", user_id, "--title", "Hi", "--wait",
        "--database", database_url, env=clean, stdout=asyncio.subprocess.PIPE, stderr=follower)
    os.close(follower)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    drawn = b""
    while select.select([leader], [], [], 0)[0]:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other side is closed and everything was read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert process.returncode == 0
    # A delivery per channel (mobile_push, and email if the enqueue made one), all skipped:
    # neither APNs nor SMTP is configured.
    emails = await email_deliveries(store)
    assert b"[" + b"#" * 30 + b"] %d/%d deliveries" % (1 + emails, 1 + emails) in drawn
    assert b"skipped %d" % (1 + emails) in drawn
    assert orjson.loads(out.splitlines()[-1])["skipped"] == 1 + emails
