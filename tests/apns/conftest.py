"""Fixtures for the APNs pool tests: throwaway TLS and signing keys, the mock, clients for it."""

import asyncio

import pytest

from owlmetry.apns import APNsClient

from .identity import KEY_ID, TEAM_ID, TOPIC, fast_retry
from .mock_fixtures import behaviour, mock  # noqa: F401  (fixtures)

PAYLOAD = {"aps": {"alert": {"title": "t", "body": "b"}}}
FAST_RETRY = fast_retry(5)


class SendingSoon:
    """An APNsClient whose `send` goes through `send_soon` (the fan-out path)."""

    def __init__(self, client: APNsClient):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def send(self, token_hex, payload, environment="production", **options):
        done = asyncio.get_running_loop().create_future()
        self._client.send_soon(token_hex, payload, environment, done.set_result, **options)
        return await done


@pytest.fixture(params=["send", "send_soon"])
async def make_client(request, mock, tls_files, auth_key):
    """`make_client(**options)` -> an APNsClient on the mock; all are closed after the test.

    Every test runs twice: with `send` awaited, and with `send_soon` and its callback."""
    clients = []

    def make(**options) -> APNsClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout_s", 10.0)
        options.setdefault("production_url", f"https://127.0.0.1:{mock.port}")
        options.setdefault("sandbox_url", f"https://localhost:{mock.port}")
        client = APNsClient(KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0], **options)
        clients.append(client)
        return client if request.param == "send" else SendingSoon(client)

    yield make
    await asyncio.gather(*(client.close() for client in clients))


def token(i: int) -> str:
    return "b" + format(i, "x").rjust(63, "0")


async def send_many(client, tokens, **options):
    return await asyncio.gather(*(client.send(t, PAYLOAD, **options) for t in tokens))
