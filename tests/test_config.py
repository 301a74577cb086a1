"""TRUSTED_PROXIES: what an operator may write, and the message for what does not work."""

import ipaddress

import pytest

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
