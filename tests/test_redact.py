"""What a log line may show of a secret: a prefix, never the whole."""

import pytest

from owlmetry.redact import mask, mask_path, url_without_password


def test_a_secret_shows_its_first_8_characters():
    assert mask("a1b2c3d4e5f60718293a4b5c6d7e8f90") == "a1b2c3d4…"
    assert mask("short") == "short"


@pytest.mark.parametrize(("path", "shown"), [
    ("/v1/devices", "/v1/devices"),
    ("/v1/notifications/mark-all-read", "/v1/notifications/mark-all-read"),
    ("/v1/devices/0b7e5f8e-2c4a-4f7e-9a51-3d2b1c0e9f88",
     "/v1/devices/0b7e5f8e-2c4a-4f7e-9a51-3d2b1c0e9f88"),
    ("/v1/devices/a1b2c3d4e5f60718", "/v1/devices/a1b2c3d4…"),
    ("/v1/owl_server_abcdefghijklmnop", "/v1/owl_serv…"),
])
def test_long_path_segments_are_masked_except_ids(path, shown):
    assert mask_path(path) == shown


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://owl:hunter2@db:5432/owl", "postgresql://owl:***@db:5432/owl"),
    ("mysql://owl:p@ss@db/x", "mysql://owl:***@db/x"),
    ("postgresql://owl:pw@db/owl?application_name=a@b", "postgresql://owl:***@db/owl?application_name=a@b"),
    ("postgresql://owl@db/owl", "postgresql://owl@db/owl"),
    ("sqlite:///var/lib/owlmetry/owlmetry.db", "sqlite:///var/lib/owlmetry/owlmetry.db"),
])
def test_a_database_url_is_shown_without_its_password(url, shown):
    assert url_without_password(url) == shown
