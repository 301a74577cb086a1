"""What every FCM test shares: a throwaway service account (a fresh RSA key per run), the
project it sends for, and its JSON as Firebase's console writes it."""

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "owl-test"
CLIENT_EMAIL = "firebase-adminsdk-owl@owl-test.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"


def rsa_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_json(key: str, token_uri: str = "https://oauth2.googleapis.com/token",
                         **fields) -> str:
    """A service-account file's text; `fields` replace (or, as None, remove) its fields."""
    document = {
        "type": "service_account", "project_id": PROJECT, "private_key_id": KEY_ID,
        "private_key": key, "client_email": CLIENT_EMAIL, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    for name, value in fields.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document, indent=2)


@pytest.fixture(scope="session")
def fcm_key() -> str:
    """The service account's RSA key (PEM) for this run."""
    return rsa_pem()
