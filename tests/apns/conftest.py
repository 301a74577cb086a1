"""Fixtures for the APNs pool tests: throwaway TLS and signing keys, the mock, clients for it."""

import asyncio
import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from owlmetry.apns import APNsClient, RetryPolicy
from owlmetry.apns.mock import MockAPNs, MockBehaviour

KEY_ID = "KEY1234567"
TEAM_ID = "TEAM123456"
TOPIC = "com.example.app"
PAYLOAD = {"aps": {"alert": {"title": "t", "body": "b"}}}
FAST_RETRY = RetryPolicy(max_retries=5, base_delay_s=0.001, max_delay_s=0.01,
                         too_many_requests_delay_s=0.002)


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key, made for this run only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_pem(key))
    return str(cert_file), str(key_file)


@pytest.fixture(scope="session")
def auth_key() -> bytes:
    """The APNs signing key (.p8 content) for this run."""
    return _pem(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def behaviour() -> MockBehaviour:
    return MockBehaviour()


@pytest.fixture
async def mock(tls_files, auth_key, behaviour):
    server = MockAPNs(*tls_files, auth_key, KEY_ID, TEAM_ID, behaviour)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_client(mock, tls_files, auth_key):
    """`make_client(**options)` -> an APNsClient on the mock; all are closed after the test."""
    clients = []

    def make(**options) -> APNsClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout_s", 10.0)
        options.setdefault("production_url", f"https://127.0.0.1:{mock.port}")
        options.setdefault("sandbox_url", f"https://localhost:{mock.port}")
        client = APNsClient(KEY_ID, TEAM_ID, auth_key, TOPIC, ca_file=tls_files[0], **options)
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in clients))


def token(i: int) -> str:
    return "b" + format(i, "x").rjust(63, "0")


async def send_many(client, tokens, **options):
    return await asyncio.gather(*(client.send(t, PAYLOAD, **options) for t in tokens))
