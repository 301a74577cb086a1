"""The example systemd unit and environment file agree with the server and the nginx config.

systemd itself cannot run in a test; what can be checked is that the files fit together: the
environment file's settings start a server, the unit runs `serve` on the port nginx proxies to,
and it waits for the shutdown drain before killing.
"""

import re
from pathlib import Path

from owlmetry.config import DEFAULT_SHUTDOWN_GRACE_SECONDS, from_env
from tests.deploy.nginx import SHIPPED

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD / "owlmetry.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_environment_file_is_a_valid_configuration():
    env = {}
    for line in (SYSTEMD / "owlmetry.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    config = from_env(env)
    assert config.trusted_proxies and config.access_log and config.cookie_secure


def test_the_unit_serves_on_the_port_nginx_proxies_to_from_its_state_folder():
    settings = unit()
    [exec_start] = settings["ExecStart"]
    assert re.search(r"owlmetry\.pyz serve --host 127\.0\.0\.1 --port 8080$", exec_start)
    assert "server 127.0.0.1:8080;" in SHIPPED.read_text()
    assert settings["EnvironmentFile"] == ["/etc/owlmetry/env"]
    assert settings["WorkingDirectory"] == ["/var/lib/owlmetry"]
    assert settings["StateDirectory"] == ["owlmetry"] and settings["User"] == ["owlmetry"]
    assert settings["Restart"] == ["on-failure"]


def test_systemd_waits_for_the_shutdown_drain():
    settings = unit()
    assert settings["KillSignal"] == ["SIGTERM"]
    assert int(settings["TimeoutStopSec"][0]) >= DEFAULT_SHUTDOWN_GRACE_SECONDS + 10
