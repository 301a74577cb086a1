"""A Firebase service account: the JSON file Firebase's console hands out, read and checked.

Owns what a usable service account is (type `service_account`, `project_id`, `client_email`,
an RSA `private_key` in PEM, an https `token_uri`) and one-line errors naming the field that is
wrong. The private key never appears in an error, a repr or a log. Must not read environment
variables (`owlmetry.config` does) or talk to the network (`oauth.py` does).
"""

import json
import urllib.parse
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


class ServiceAccountError(ValueError):
    """A service account that cannot be used; the message names the field, never the key."""


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str = field(repr=False)  # PEM text of the RSA key
    token_uri: str = GOOGLE_TOKEN_URI
    private_key_id: str | None = None  # the JWT header's `kid`, when the file has one


def parse_service_account(text: str) -> ServiceAccount:
    """The service account in `text` (the file's JSON); ServiceAccountError says what is wrong."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past Python's stack
        raise ServiceAccountError(
            f"is not JSON (line {getattr(exc, 'lineno', '?')}): expected the service-account "
            "file Firebase's console downloads (Project settings > Service accounts)") from None
    if not isinstance(document, dict):
        raise ServiceAccountError("must be a JSON object (a Firebase service-account file)")
    kind = document.get("type")
    if kind != "service_account":
        raise ServiceAccountError(
            f"field 'type' must be \"service_account\", not {_shown(kind)}"
            + (" (an OAuth client or user credential is not a service account)" if kind else ""))
    project_id = _text(document, "project_id")
    client_email = _text(document, "client_email")
    if "@" not in client_email:
        raise ServiceAccountError(f"field 'client_email' must be an email address, not {client_email!r}")
    private_key = _text(document, "private_key")
    _check_rsa_key(private_key)
    token_uri = _text(document, "token_uri")
    parts = urllib.parse.urlsplit(token_uri)
    if parts.scheme != "https" or not parts.hostname:
        raise ServiceAccountError(f"field 'token_uri' must be an https:// URL, not {token_uri!r}")
    key_id = document.get("private_key_id")
    return ServiceAccount(project_id, client_email, private_key, token_uri,
                          key_id if isinstance(key_id, str) and key_id else None)


def _text(document: dict, name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else "must be a non-empty string"
        raise ServiceAccountError(f"field '{name}' {problem}")
    return value.strip()


def _check_rsa_key(pem: str) -> None:
    # The messages describe the key without quoting any of it.
    if "-----BEGIN" not in pem:
        raise ServiceAccountError("field 'private_key' must be a PEM private key "
                                  "(-----BEGIN PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ServiceAccountError("field 'private_key' is not a readable, unencrypted PEM "
                                  "private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServiceAccountError("field 'private_key' must be an RSA key (Google's token "
                                  "endpoint takes RS256-signed requests only)")


def _shown(value) -> str:
    return "nothing" if value is None else json.dumps(value)[:40]
