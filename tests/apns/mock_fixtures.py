"""The mock APNs as a fixture, for the folders that test a client against it directly (the
APNs layer's tests and the HTTP/2 core's): `behaviour` (what it answers; override it to inject
faults) and `mock` (the server, started on a free port with this run's certificate and key)."""

import pytest

from owlmetry.apns.mock import MockAPNs, MockBehaviour

from .identity import KEY_ID, TEAM_ID


@pytest.fixture
def behaviour() -> MockBehaviour:
    return MockBehaviour()


@pytest.fixture
async def mock(tls_files, auth_key, behaviour):
    server = MockAPNs(*tls_files, auth_key, KEY_ID, TEAM_ID, behaviour)
    await server.start()
    yield server
    await server.stop()
