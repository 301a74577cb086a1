"""The service account and the FCM settings as an operator meets them: every mistake stops the
start with one line naming the variable and the field, and never shows the key."""

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from owlmetry import config
from owlmetry.config import ConfigError
from owlmetry.fcm import ServiceAccountError, parse_service_account

from .identity import CLIENT_EMAIL, KEY_ID, PROJECT, service_account_json


def test_a_console_file_is_read(fcm_key):
    account = parse_service_account(service_account_json(fcm_key))
    assert (account.project_id, account.client_email, account.private_key_id) == (
        PROJECT, CLIENT_EMAIL, KEY_ID)
    assert account.token_uri == "https://oauth2.googleapis.com/token"
    assert "PRIVATE" not in repr(account)


def ec_pem() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


@pytest.mark.parametrize(("fields", "expected"), [
    ({"type": "authorized_user"}, "field 'type' must be \"service_account\""),
    ({"type": None}, "field 'type' must be \"service_account\", not nothing"),
    ({"project_id": None}, "field 'project_id' is missing"),
    ({"project_id": ""}, "field 'project_id' must be a non-empty string"),
    ({"client_email": 42}, "field 'client_email' must be a non-empty string"),
    ({"client_email": "nobody"}, "field 'client_email' must be an email address"),
    ({"private_key": None}, "field 'private_key' is missing"),
    ({"private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}, "field 'private_key' must be a PEM"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n"},
     "field 'private_key' is not a readable, unencrypted PEM private key"),
    ({"token_uri": None}, "field 'token_uri' is missing"),
    ({"token_uri": "http://oauth2.googleapis.com/token"}, "field 'token_uri' must be an https:// URL"),
])
def test_each_wrong_field_is_named(fcm_key, fields, expected):
    with pytest.raises(ServiceAccountError) as caught:
        parse_service_account(service_account_json(fcm_key, **fields))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_ec_key_is_refused_without_being_shown():
    pem = ec_pem()
    with pytest.raises(ServiceAccountError, match="must be an RSA key") as caught:
        parse_service_account(service_account_json(pem))
    assert pem.splitlines()[1][:20] not in str(caught.value)


@pytest.mark.parametrize("text", ["", "{", "[]", '"service_account"', "[" * 100_000])
def test_not_a_json_object(text):
    with pytest.raises(ServiceAccountError):
        parse_service_account(text)


def test_settings_from_the_json_text(fcm_key):
    env = {"FCM_SERVICE_ACCOUNT": service_account_json(fcm_key)}
    settings = config.from_env(env)
    assert settings.fcm.project_id == PROJECT
    assert settings.fcm_url == "https://fcm.googleapis.com" and settings.fcm_ca_file is None


def test_settings_from_a_file_with_a_url_and_ca(fcm_key, tmp_path, tls_files):
    path = tmp_path / "owl-test-firebase-adminsdk.json"
    path.write_text(service_account_json(fcm_key))
    settings = config.from_env({"FCM_SERVICE_ACCOUNT_PATH": str(path),
                                "FCM_URL": "https://127.0.0.1:8443/", "FCM_CA_FILE": tls_files[0]})
    assert settings.fcm.client_email == CLIENT_EMAIL
    assert settings.fcm_url == "https://127.0.0.1:8443"
    assert settings.fcm_ca_file == tls_files[0]


def test_unset_means_not_configured():
    assert config.from_env({}).fcm is None


@pytest.mark.parametrize(("env", "expected"), [
    ({"FCM_SERVICE_ACCOUNT_PATH": "/nonexistent/sa.json"},
     "FCM_SERVICE_ACCOUNT_PATH: cannot read '/nonexistent/sa.json'"),
    ({"FCM_SERVICE_ACCOUNT": '{"type": "service_account"}'},
     "FCM_SERVICE_ACCOUNT: field 'project_id' is missing"),
    ({"FCM_SERVICE_ACCOUNT": "{}", "FCM_SERVICE_ACCOUNT_PATH": "/x.json"}, "both set"),
    ({"FCM_URL": "http://fcm.googleapis.com"}, "FCM_URL must be an https:// URL"),
    ({"FCM_CA_FILE": "/nonexistent/ca.pem"}, "FCM_CA_FILE: no such file"),
])
def test_settings_errors_name_the_variable(env, expected):
    with pytest.raises(ConfigError, match=expected):
        config.from_env(env)


def test_an_error_in_a_file_names_the_file_and_field_but_not_the_key(fcm_key, tmp_path):
    path = tmp_path / "sa.json"
    path.write_text(service_account_json(fcm_key, token_uri="ftp://example.com"))
    with pytest.raises(ConfigError) as caught:
        config.from_env({"FCM_SERVICE_ACCOUNT_PATH": str(path)})
    message = str(caught.value)
    assert str(path) in message and "token_uri" in message
    body = "".join(fcm_key.splitlines()[1:3])
    assert body[:16] not in message and "BEGIN" not in message
    assert json.loads(path.read_text())["private_key"] == fcm_key  # the file is left alone
