"""The email channel through a real SMTP server (aiosmtpd): one mail per notification to the
recipient's address, and every outcome recorded like any channel's, on both backends."""

import asyncio
import logging
import socket
import uuid

import pytest

from owlmetry.clock import now_ms
from owlmetry.config import SmtpSettings
from owlmetry.mail import Mailer
from owlmetry.notify.channels.email import Email, absolute_link
from owlmetry.store import NotificationContent
from tests.notify.conftest import server_log, wait_done
from tests.smtp_server import (  # noqa: F401  (mailbox: a fixture)
    SMTP_PASSWORD,
    SMTP_USER,
    SMTP_WARNING,
    Mailbox,
    mailbox,
)

pytestmark = SMTP_WARNING

CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote:\nGreat app",
                              "/feedback/1", {"feedback_id": "f1"})
WEB_APP = "https://owlmetry.example.com"


def email_channel(mailbox: Mailbox | None, web_app_url: str | None = WEB_APP) -> Email:
    smtp = (SmtpSettings("127.0.0.1", mailbox.port, SMTP_USER, SMTP_PASSWORD)
            if mailbox is not None else None)
    return Email(Mailer(smtp, "Owlmetry <notify@owlmetry.example.com>"), web_app_url)


async def new_user(store, email: str | None = None) -> tuple[str, str]:
    email = email or f"{uuid.uuid4().hex[:10]}@example.com"
    user = await store.create_user(str(uuid.uuid4()), email, now_ms())
    return user.id, user.email


async def records(store) -> list[tuple]:
    return await store.execute(
        "SELECT device_id, channel, outcome, status, reason FROM notification_pushes")


async def test_one_mail_per_notification_says_title_body_and_link(store, mailbox, dispatchers):
    (alice, alice_email), (bob, bob_email) = [await new_user(store) for _ in range(2)]
    dispatcher = dispatchers({"email": email_channel(mailbox)})

    ids = await dispatcher.enqueue([alice, bob, alice], CONTENT)
    progress = await wait_done(store, ids)

    assert progress.deliveries == {"sent": 2} and progress.pushes == {"delivered": 2}
    (mail,) = mailbox.to(alice_email)
    assert len(mailbox.to(bob_email)) == 1
    assert mail["Subject"] == "New feedback"
    assert mail["To"] == alice_email
    assert mail["From"] == "Owlmetry <notify@owlmetry.example.com>"
    text = mail.get_payload(decode=True).decode().replace("\r\n", "\n")  # as it came by SMTP
    assert text == "Someone wrote:\nGreat app\n\nhttps://owlmetry.example.com/feedback/1\n"
    # The target is the user: its record holds the user's id where a device's would be.
    assert sorted(await records(store)) == sorted(
        [(alice, "email", "delivered", None, None), (bob, "email", "delivered", None, None)])


async def test_a_5xx_refusal_fails_with_the_reply_and_is_not_retried(
        store, mailbox, dispatchers, caplog):
    caplog.set_level(logging.DEBUG)
    user_id, email = await new_user(store)
    mailbox.refusal = Mailbox.REJECTED
    dispatcher = dispatchers({"email": email_channel(mailbox)})

    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))

    assert progress.deliveries == {"failed": 1} and progress.pushes == {"failed": 1}
    ((device_id, _, _, status, reason),) = await records(store)
    assert (device_id, status) == (user_id, 550)
    assert "No such mailbox here" in reason
    assert await store.execute("SELECT attempts FROM notification_deliveries") == [(1,)]
    # A failure never removes anything: the user and their address stay.
    assert await store.execute("SELECT count(*) FROM users WHERE id = $1", user_id) == [(1,)]
    assert email not in server_log(caplog)  # addresses are logged masked, at any level


async def test_a_4xx_refusal_is_retried_until_the_mailbox_takes_it(store, mailbox, dispatchers,
                                                                 caplog):
    caplog.set_level(logging.DEBUG)
    user_id, email = await new_user(store)
    mailbox.refusal = Mailbox.TRY_LATER
    dispatcher = dispatchers({"email": email_channel(mailbox)}, retry_base_ms=200)

    ids = await dispatcher.enqueue([user_id], CONTENT)
    for _ in range(200):  # until a try has been turned away
        (row,) = await store.execute("SELECT attempts, reason FROM notification_deliveries")
        if row[0] >= 1 and row[1]:
            break
        await asyncio.sleep(0.01)
    assert "try again later" in row[1] and mailbox.messages == []
    mailbox.refusal = None
    progress = await wait_done(store, ids)

    assert progress.deliveries == {"sent": 1} and progress.pushes == {"delivered": 1}
    assert len(mailbox.to(email)) == 1
    ((attempts,),) = await store.execute("SELECT attempts FROM notification_deliveries")
    assert attempts >= 2
    assert email not in server_log(caplog)


async def test_an_unreachable_relay_is_retried_then_given_up(store, dispatchers):
    user_id, _ = await new_user(store)
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        channel = Email(Mailer(SmtpSettings("127.0.0.1", closed.getsockname()[1]), "o@x.example"))
        dispatcher = dispatchers({"email": channel}, max_attempts=2)
        progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"failed": 1}
    ((_, _, outcome, _, reason),) = await records(store)
    assert outcome == "failed" and "(gave up after 2 attempts)" in reason


async def test_a_stop_does_not_wait_for_a_relay_that_hangs(store, dispatchers):
    """Sends under way end as retries when the channel closes: the mail goes back to the queue
    for the next start instead of holding the shutdown for the SMTP timeouts."""
    user_ids = [(await new_user(store))[0] for _ in range(20)]  # more than MAX_SESSIONS
    accepted = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = Email(Mailer(SmtpSettings("127.0.0.1", port), "o@x.example"))
    dispatcher = dispatchers({"email": channel})
    ids = await dispatcher.enqueue(user_ids, CONTENT)
    while dispatcher.held < len(ids):
        await asyncio.sleep(0.01)
    started = asyncio.get_running_loop().time()
    await dispatcher.stop(grace_s=0.2)
    assert asyncio.get_running_loop().time() - started < 5
    assert (await store.progress(ids)).deliveries == {"pending": 20}
    assert await records(store) == []
    server.close()


async def test_without_smtp_every_email_delivery_is_skipped(store, dispatchers):
    user_id, _ = await new_user(store)
    channel = email_channel(None)
    assert channel.unavailable == "SMTP_URL is not set"
    dispatcher = dispatchers({"email": channel})
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"skipped": 1} and progress.pushes == {"skipped": 1}
    assert await store.execute("SELECT reason FROM notification_deliveries") == [
        ("SMTP_URL is not set",)]


@pytest.mark.parametrize("link,web_app_url,expected", [
    ("/issues/1", WEB_APP, f"{WEB_APP}/issues/1"),
    ("issues/1", WEB_APP, f"{WEB_APP}/issues/1"),
    ("https://elsewhere.example/x", WEB_APP, "https://elsewhere.example/x"),
    ("/issues/1", None, "/issues/1"),
    (None, WEB_APP, None),
])
def test_a_relative_link_gets_the_web_apps_address(link, web_app_url, expected):
    assert absolute_link(link, web_app_url) == expected
