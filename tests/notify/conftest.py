"""Fixtures and helpers for the dispatcher tests: dispatchers on the test's store, users with
devices, waiting for a fan-out's end. (The providers' mocks and the mobile_push channel on
them are every folder's: `tests/provider_mocks.py`.)"""

import asyncio
import uuid

import pytest

from owlmetry.clock import now_ms
from owlmetry.notify.dispatcher import Dispatcher
from owlmetry.store import DeviceRegistration, NotificationContent

CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote", "/feedback/1",
                              {"feedback_id": "f1"})


@pytest.fixture
async def dispatchers(store):
    """`dispatchers(channels, **options)` -> a started Dispatcher; all stop after the test."""
    started = []

    def start(channels, **options) -> Dispatcher:
        options.setdefault("retry_base_ms", 20)
        options.setdefault("poll_s", 0.05)
        dispatcher = Dispatcher(store, channels, **options)
        dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    await asyncio.gather(*(dispatcher.stop(grace_s=1) for dispatcher in started))


def token(i: int) -> str:
    return "c" + format(i, "x").rjust(63, "0")


async def user_with_devices(store, environments: list[str], first_token: int) -> tuple[str, list]:
    """A new user with one ios_push device per environment given; returns (id, tokens)."""
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                   now_ms())
    tokens = []
    for i, environment in enumerate(environments):
        tokens.append(token(first_token + i))
        await store.register_device(
            str(uuid.uuid4()), user.id,
            DeviceRegistration("ios_push", tokens[-1], environment, None, None, None), now_ms())
    return user.id, tokens


async def wait_done(store, ids: list[str], timeout: float = 20.0):
    """The progress of `ids` once no delivery is pending."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        progress = await store.progress(ids)
        if progress.done:
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still pending after {timeout}s: {progress}")
        await asyncio.sleep(0.02)


# Loggers of the stand-ins the tests run in the server's process: the mocks' h2 decodes the
# requests with hpack, which logs each header at DEBUG (the server's client has codecs of its
# own, owlmetry/h2client); aiosmtpd logs the SMTP conversation.
STAND_INS = ("hpack", "mail.log")


def server_log(caplog) -> str:
    """What the server logged: every record `caplog` kept but the stand-ins'."""
    return "\n".join(record.getMessage() for record in caplog.records
                     if not record.name.startswith(STAND_INS))
