"""Settings as an operator writes them: what is accepted, and the message for what is not."""

import inspect
import ipaddress
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from owlmetry import config as config_module
from owlmetry.config import Config, ConfigError, from_env


def test_no_proxy_is_trusted_by_default():
    assert from_env({}).trusted_proxies == ()
    assert from_env({"TRUSTED_PROXIES": " "}).trusted_proxies == ()
    assert Config().trusted_proxies == ()


def test_addresses_and_blocks_of_both_families_separated_by_commas():
    config = from_env({"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1 ,fd00::/8,"})
    assert config.trusted_proxies == tuple(ipaddress.ip_network(text) for text in (
        "127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8"))


@pytest.mark.parametrize(("text", "message"), [
    ("proxy.example.com", "TRUSTED_PROXIES: 'proxy.example.com' is not an IP address"),
    ("127.0.0.1:8080", "TRUSTED_PROXIES: '127.0.0.1:8080' is not an IP address"),
    ("10.0.0.0/33", "TRUSTED_PROXIES: '10.0.0.0/33' is not an IP address"),
    ("[::1]", "TRUSTED_PROXIES: '[::1]' is not an IP address"),
    ("127.0.0.1 10.0.0.1", "TRUSTED_PROXIES: '127.0.0.1 10.0.0.1' is not an IP address"),
    ("10.0.0.1/8", "TRUSTED_PROXIES: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
])
def test_a_value_that_is_not_an_address_is_refused_naming_the_variable(text, message):
    with pytest.raises(ConfigError) as refused:
        from_env({"TRUSTED_PROXIES": f"127.0.0.1,{text}"})
    assert str(refused.value).startswith(message)


def test_notification_settings_default_to_upstreams():
    config = from_env({})
    assert (config.retention_read_days, config.retention_deleted_days) == (30, 90)
    assert config.web_app_url is None
    assert config.notification_defaults.channels("issue.digest", None) == {"email"}
    assert config.idempotency_key_hours == 24


def test_notification_settings_are_read():
    config = from_env({"RETENTION_READ_DAYS": "0", "RETENTION_DELETED_DAYS": "7",
                       "WEB_APP_URL": "https://owl.example.com/",
                       "NOTIFICATION_DEFAULTS": '{"*": {"email": true}}',
                       "IDEMPOTENCY_KEY_HOURS": "72"})
    assert (config.retention_read_days, config.retention_deleted_days) == (0, 7)
    assert config.idempotency_key_hours == 72
    assert config.web_app_url == "https://owl.example.com"
    assert config.notification_defaults.channels("x", None) == {"in_app", "email", "mobile_push"}


@pytest.mark.parametrize(("env", "message"), [
    ({"RETENTION_READ_DAYS": "-1"}, "RETENTION_READ_DAYS must be from 0 to 36500"),
    ({"RETENTION_DELETED_DAYS": "soon"}, "RETENTION_DELETED_DAYS must be a whole number"),
    ({"IDEMPOTENCY_KEY_HOURS": "23"}, "IDEMPOTENCY_KEY_HOURS must be from 24 to 8760"),
    ({"WEB_APP_URL": "owl.example.com"}, "WEB_APP_URL must be an http:// or https:// URL"),
    ({"NOTIFICATION_DEFAULTS": '{"a": {"fax": true}}'},
     "NOTIFICATION_DEFAULTS: types.a: unknown channel 'fax'"),
])
def test_bad_notification_settings_are_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as refused:
        from_env(env)
    assert str(refused.value).startswith(message)


def test_allowed_origins_are_exact_origins_in_one_spelling():
    assert from_env({}).allowed_origins == frozenset()
    config = from_env({"ALLOWED_ORIGINS": "https://App.Example.com, http://localhost:3000,"
                                          "https://app.example.com:443,http://[::1]:8080"})
    assert config.allowed_origins == {"https://app.example.com", "http://localhost:3000",
                                      "http://[::1]:8080"}


@pytest.mark.parametrize(("text", "message"), [
    ("https://app.example.com/", "ALLOWED_ORIGINS: 'https://app.example.com/' is not an origin: "
                                 "it has a path, query or fragment (did you mean "
                                 "https://app.example.com?)"),
    ("*", "ALLOWED_ORIGINS: '*' is not an origin (expected scheme://host[:port]"),
    ("app.example.com", "ALLOWED_ORIGINS: 'app.example.com' is not an origin"),
    ("ftp://app.example.com", "ALLOWED_ORIGINS: 'ftp://app.example.com' is not an origin"),
    ("https://user@app.example.com", "ALLOWED_ORIGINS: 'https://user@app.example.com' is not"),
    ("https://app.example.com:99999", "ALLOWED_ORIGINS: 'https://app.example.com:99999' is not"),
    ("null", "ALLOWED_ORIGINS: 'null' is not an origin"),
])
def test_an_allowed_origin_that_is_not_one_is_refused_naming_the_variable(text, message):
    with pytest.raises(ConfigError) as refused:
        from_env({"ALLOWED_ORIGINS": f"https://ok.example.com,{text}"})
    assert str(refused.value).startswith(message)


def test_client_timeouts_default_to_nginxs_and_are_read():
    config = from_env({})
    assert (config.client_header_timeout_s, config.client_body_timeout_s) == (60, 60)
    config = from_env({"CLIENT_HEADER_TIMEOUT": "15", "CLIENT_BODY_TIMEOUT": "30"})
    assert (config.client_header_timeout_s, config.client_body_timeout_s) == (15, 30)
    for name in ("CLIENT_HEADER_TIMEOUT", "CLIENT_BODY_TIMEOUT"):
        with pytest.raises(ConfigError, match=f"{name} must be from 1 to 3600, not 0"):
            from_env({name: "0"})


def test_the_schedule_horizon_defaults_to_30_days_and_is_read():
    assert from_env({}).schedule_horizon_days == 30 == Config().schedule_horizon_days
    assert from_env({"SCHEDULE_HORIZON_DAYS": "365"}).schedule_horizon_days == 365


@pytest.mark.parametrize(("text", "message"), [
    ("0", "SCHEDULE_HORIZON_DAYS must be from 1 to 3650"),
    ("3651", "SCHEDULE_HORIZON_DAYS must be from 1 to 3650"),
    ("a month", "SCHEDULE_HORIZON_DAYS must be a whole number"),
])
def test_a_bad_schedule_horizon_is_refused_naming_the_variable(text, message):
    with pytest.raises(ConfigError) as refused:
        from_env({"SCHEDULE_HORIZON_DAYS": text})
    assert str(refused.value).startswith(message)


# Every variable `from_env` reads, found in its source (a new one is covered without a change
# here), and values of every wrong shape an operator's typo or a template can leave.
READ = re.compile(r'env(?:\.get\(|\[)"([A-Z0-9_]+)"')
HOSTILE = ["", " ", "abc", "-1", "0", "1.5", "99999999999999999999", "1e309", "é", "\t",
           "true", "[]", "{", "//", "http://", "https://", "smtp://", "x" * 10_000,
           "/nonexistent/file", "/", "/dev/null", "::", "0.0.0.0/33", "a=b", "[" * 100_000]


def test_every_variable_with_a_hostile_value_is_accepted_or_refused_naming_it():
    names = sorted(set(READ.findall(inspect.getsource(config_module))))
    assert len(names) > 25, names  # the scan found the reads
    for name in names:
        for value in HOSTILE:
            try:
                from_env({name: value})
            except ConfigError as refused:
                assert name in str(refused), (name, value, str(refused))


def pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


APNS_IDENTITY = {"APNS_KEY_ID": "KEY1234567", "APNS_TEAM_ID": "TEAM123456",
                 "APNS_BUNDLE_ID": "com.example.app"}


def test_an_apns_key_that_cannot_sign_is_refused_at_start_naming_where_it_came_from(tmp_path):
    # Before, `serve` started and died on a traceback from the JWT library.
    garbled = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"
    rsa_key = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    p384 = pem(ec.generate_private_key(ec.SECP384R1()))
    for text, reason in [(garbled, "not a readable, unencrypted PEM private key"),
                         (rsa_key, "not an EC P-256 key"), (p384, "not an EC P-256 key")]:
        with pytest.raises(ConfigError) as refused:
            from_env({**APNS_IDENTITY, "APNS_KEY_P8": text})
        assert str(refused.value).startswith(f"APNS_KEY_P8: {reason}")
        assert text.splitlines()[1][:20] not in str(refused.value)  # none of the key quoted
        path = tmp_path / "key.p8"
        path.write_text(text)
        with pytest.raises(ConfigError) as refused:
            from_env({**APNS_IDENTITY, "APNS_KEY_P8_PATH": str(path)})
        assert str(refused.value).startswith(f"APNS_KEY_P8_PATH: {reason}")
    (tmp_path / "binary.p8").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="APNS_KEY_P8_PATH: cannot read .*: not a text file"):
        from_env({**APNS_IDENTITY, "APNS_KEY_P8_PATH": str(tmp_path / "binary.p8")})
    good = pem(ec.generate_private_key(ec.SECP256R1()))
    assert from_env({**APNS_IDENTITY, "APNS_KEY_P8": good}).apns is not None


def test_a_ca_file_of_no_certificates_is_refused_at_start(tmp_path):
    # Before, `serve` said it could not listen: the TLS context failed while it started.
    (tmp_path / "key.pem").write_text(pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for name in ("APNS_CA_FILE", "FCM_CA_FILE"):
        for path, reason in [(tmp_path / "key.pem", "holds no PEM certificate"),
                             (tmp_path / "binary", "holds no PEM certificate"),
                             (tmp_path, "is not a file"), ("/dev/null", "is not a file"),
                             (tmp_path / "absent.pem", "no such file")]:
            with pytest.raises(ConfigError) as refused:
                from_env({name: str(path)})
            assert str(refused.value).startswith(f"{name}: ") and reason in str(refused.value)
