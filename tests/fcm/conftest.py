"""Fixtures for the FCM tests: the throwaway service account, the mock FCM (TLS, HTTP/2 and
HTTP/1.1) for it, access tokens from the mock, and a plain HTTP/2 connection to the mock."""

import dataclasses

import orjson
import pytest

from owlmetry.fcm import AccessTokens, parse_service_account
from owlmetry.fcm.mock import FcmBehaviour, MockFCM

from .h2client import H2Client
from .identity import PROJECT, fcm_key, service_account_json  # noqa: F401  (fixture)


@pytest.fixture
def behaviour() -> FcmBehaviour:
    return FcmBehaviour()


@pytest.fixture(scope="session")
def base_account(fcm_key):
    """The test service account as parsed from its file (token_uri Google's)."""
    return parse_service_account(service_account_json(fcm_key))


@pytest.fixture
async def mock(tls_files, base_account, behaviour):
    server = MockFCM(*tls_files, base_account, behaviour)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def account(mock, base_account):
    """The service account as the client reads it: its token_uri is the mock's."""
    return dataclasses.replace(base_account, token_uri=mock.token_uri)


@pytest.fixture
async def tokens(account, tls_files):
    access = AccessTokens(account, ca_file=tls_files[0])
    yield access
    await access.close()


@pytest.fixture
async def h2(mock, tls_files):
    client = await H2Client.connect(mock.port, tls_files[0])
    yield client
    await client.close()


SEND_PATH = f"/v1/projects/{PROJECT}/messages:send"


def send_body(token: str, **message) -> bytes:
    return orjson.dumps({"message": {"token": token, "notification": {"title": "t"}, **message}})


async def send(h2, access_token: str, body: bytes, path: str = SEND_PATH):
    return await h2.request(path, body, {"authorization": f"Bearer {access_token}",
                                         "content-type": "application/json"})
