"""The providers' mocks every folder's tests may send to: a mock APNs per environment and a
mock FCM (their fixtures, `tests/conftest.py` makes them every folder's), and the mobile_push
channel on them, or as a server without their credentials has it."""

import dataclasses

import pytest

from owlmetry.apns import APNsClient
from owlmetry.apns.mock import MockAPNs, MockBehaviour
from owlmetry.fcm import parse_service_account
from owlmetry.fcm.client import FCMClient, FcmRetryPolicy
from owlmetry.fcm.mock import FcmBehaviour, MockFCM
from owlmetry.notify.channels.mobile_push import MobilePush
from owlmetry.notify.providers.apns import APNs
from owlmetry.notify.providers.fcm import FCM, NOT_CONFIGURED
from owlmetry.store import Platform
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC, fast_retry
from tests.fcm.identity import fcm_key, service_account_json  # noqa: F401  (fixture)

FAST_RETRY = fast_retry(3)  # the dispatcher tests count requests: 1 + 3 retries per attempt
FCM_FAST_RETRY = FcmRetryPolicy(max_retries=3, lost_base_delay_s=0.01, lost_max_delay_s=0.05)


class Mocks:
    """One mock APNs host per environment, as Apple has."""

    def __init__(self, production: MockAPNs, sandbox: MockAPNs):
        self.production, self.sandbox = production, sandbox

    def requests(self, token: str) -> int:
        return self.production.stats.requests[token] + self.sandbox.stats.requests[token]


@pytest.fixture
async def mocks(tls_files, auth_key):
    servers = [MockAPNs(*tls_files, auth_key, KEY_ID, TEAM_ID, MockBehaviour()) for _ in "ps"]
    for server in servers:
        await server.start()
    yield Mocks(*servers)
    for server in servers:
        await server.stop()


@pytest.fixture(scope="session")
def fcm_account(fcm_key):
    return parse_service_account(service_account_json(fcm_key))


@pytest.fixture
async def fcm_mock(tls_files, fcm_account):
    """The mock FCM (one host for both environments, as Google has) for the test account."""
    server = MockFCM(*tls_files, fcm_account, FcmBehaviour())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def mobile_push(mocks, fcm_mock, fcm_account, tls_files, auth_key):
    """`mobile_push(android=True)` -> the channel, its APNs provider on the mocks and its FCM
    provider on the mock FCM (or, with android=False, FCM not configured)."""
    account = dataclasses.replace(fcm_account, token_uri=fcm_mock.token_uri)

    def make(android: bool = True) -> MobilePush:
        fcm = (FCM(FCMClient(account, url=fcm_mock.url, ca_file=tls_files[0],
                             retry=FCM_FAST_RETRY, timeout_s=10))
               if android else FCM(None, NOT_CONFIGURED))
        return MobilePush({Platform.IOS: APNs(APNsClient(
            KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0], retry=FAST_RETRY,
            timeout_s=10, production_url=f"https://127.0.0.1:{mocks.production.port}",
            sandbox_url=f"https://127.0.0.1:{mocks.sandbox.port}")), Platform.ANDROID: fcm})
    return make


def unconfigured_push() -> MobilePush:
    """The channel as a server without the APNs identity and the FCM service account has it."""
    return MobilePush({Platform.IOS: APNs(None, "APNs is not configured: APNS_KEY_ID, "
                                                "APNS_KEY_P8 unset"),
                       Platform.ANDROID: FCM(None, NOT_CONFIGURED)})
