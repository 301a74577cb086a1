"""The single-file build: scripts/build-pyz, then owlmetry.pyz run by a Python with nothing installed.

The pyz is built once for the module, with this interpreter's pip and shiv, into a temporary
folder (never dist/). Every run is `<empty venv>/bin/python owlmetry.pyz ...` with a bare
environment (no PYTHONPATH, a fresh HOME where shiv unpacks) from a temporary folder, as on a
machine that has only Python.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import jwt
import pytest

from owlmetry.cli import build_parser
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    # A build that cannot run (no shiv, no network) fails here: shiv is in the test extras.
    output = tmp_path_factory.mktemp("build") / "owlmetry.pyz"
    build = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-pyz"), "--output", str(output)],
        cwd=tmp_path_factory.mktemp("elsewhere"), capture_output=True, text=True, timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return output


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """An empty venv: venv bases it on the base interpreter, without pip or site-packages."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


class Pyz:
    """`python owlmetry.pyz ...` as an operator types it, on a machine with only Python."""

    def __init__(self, python: Path, pyz: Path, home: Path):
        self.python, self.pyz = python, pyz
        self.env = {"PATH": os.defpath, "HOME": str(home), "LANG": "C.UTF-8"}

    def command(self, args) -> list[str]:
        return [str(self.python), str(self.pyz), *args]

    def run(self, *args, cwd, env=None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=120, check=False)

    def ok(self, *args, cwd) -> str:
        result = self.run(*args, cwd=cwd)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def start(self, *args, cwd) -> subprocess.Popen:
        return subprocess.Popen(self.command(args), cwd=cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def owlmetry(pyz, bare_python, tmp_path_factory) -> Pyz:
    return Pyz(bare_python, pyz, tmp_path_factory.mktemp("home"))


def test_the_bare_python_really_has_nothing_installed(owlmetry, tmp_path):
    for module in ("aiohttp", "owlmetry", "shiv", "pip"):
        probe = subprocess.run([str(owlmetry.python), "-c", f"import {module}"],
                               cwd=tmp_path, env=owlmetry.env, capture_output=True, check=False)
        assert probe.returncode != 0, f"{module} is importable"


def test_the_pyz_is_one_executable_file_carrying_the_schema(pyz):
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
    # setup.py copies schema.sql into the package; a checkout's copy is nowhere near the pyz.
    assert "site-packages/owlmetry/schema.sql" in names
    assert any(name.startswith("site-packages/uvloop/") for name in names)


def request(method: str, url: str, token: str | None = None, body: dict | None = None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                timeout=10) as response:
        return response.status, json.loads(response.read())


def wait_until_listening(server: subprocess.Popen) -> None:
    output = []
    for line in server.stdout:
        output.append(line)
        if "listening on" in line:
            return
    pytest.fail("the server stopped before listening:\n" + "".join(output))


def test_a_server_started_from_the_pyz_registers_and_lists_a_device(owlmetry, tmp_path):
    # No --database anywhere: the default ./owlmetry.db in the current folder.
    user_id = owlmetry.ok("users", "create", "alice@example.com", cwd=tmp_path)
    token = owlmetry.ok("users", "token", "alice@example.com", cwd=tmp_path)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == user_id
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = owlmetry.start("serve", "--port", str(port), cwd=tmp_path)
    try:
        wait_until_listening(server)
        assert request("GET", f"{base}/healthz") == (200, {"status": "ok"})
        status, registered = request("POST", f"{base}/v1/devices", token, {
            "channel": "ios_push", "token": TOKEN, "environment": "sandbox",
            "app_version": "2.1.0", "device_model": "iPhone15,3", "os_version": "iOS 18.2",
        })
        assert status == 201
        assert registered["device"]["environment"] == "sandbox"
        assert request("GET", f"{base}/v1/devices", token) == (200, {"devices": [registered["device"]]})
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0
    assert (tmp_path / "owlmetry.db").is_file()


def test_the_management_commands_run_from_the_pyz(owlmetry, tmp_path):
    database = ("--database", f"sqlite:///{tmp_path}/ops.db")
    assert owlmetry.ok("migrate", *database, cwd=tmp_path) == "ok"
    owlmetry.ok("users", "create", "bob@example.com", *database, cwd=tmp_path)
    secret = owlmetry.ok("keys", "create", "--kind", "server", "--name", "deploy", *database,
                         cwd=tmp_path)
    assert secret.startswith("owl_server_")
    (key,) = json.loads(owlmetry.ok("keys", "list", *database, cwd=tmp_path))
    assert key["name"] == "deploy" and key["revoked_at"] is None
    assert owlmetry.ok("keys", "revoke", key["id"], *database, cwd=tmp_path) == key["id"]
    # Bob has no devices: the notification is enqueued and its delivery settles at once.
    *ids, summary = owlmetry.ok("notify", "--user", "bob@example.com", "--title", "Hello", "--wait",
                                *database, cwd=tmp_path).splitlines()
    assert len(ids) == 1
    assert json.loads(summary)["notifications"] == 1


def command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the CLI, so a new one is covered without editing this."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                paths += command_paths(subparser, (*prefix, name))
    return paths


@pytest.mark.parametrize("command", command_paths(build_parser()), ids=lambda command: " ".join(command) or "owlmetry")
def test_every_command_has_help(owlmetry, tmp_path, command):
    result = owlmetry.run(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(('owlmetry', *command))}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["users", "create", "not-an-email"], "not a valid email address"),
])
def test_a_bad_argument_is_a_usage_error_without_a_traceback(owlmetry, tmp_path, args, message):
    result = owlmetry.run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: owlmetry" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_shiv_root_moves_the_unpacked_files_off_an_unusable_home(owlmetry, tmp_path):
    # As under systemd with no writable home: HOME=/dev/null cannot hold ~/.shiv, even for root.
    cache = tmp_path / "cache"
    result = owlmetry.run("--version", cwd=tmp_path, env={"HOME": "/dev/null", "SHIV_ROOT": str(cache)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("owlmetry ")
    assert [path.name.split("_")[0] for path in cache.iterdir() if not path.name.startswith(".")] == \
        ["owlmetry.pyz"]


def test_a_python_it_was_not_built_for_is_told_which_one_to_use(owlmetry, tmp_path):
    # Another Python is stood in for by the unpacked pyz's record of its target: rewritten to
    # name a Python that this one is not, the start-up check sees the mismatch it would see.
    cache = tmp_path / "cache"
    assert owlmetry.run("--version", cwd=tmp_path, env={"SHIV_ROOT": str(cache)}).returncode == 0
    (record,) = cache.glob("owlmetry.pyz_*/site-packages/bin/owlmetry-pyz-target.json")
    target = json.loads(record.read_text())
    record.write_text(json.dumps({**target, "python": "3.99",
                                  "ext_suffix": ".cpython-399-x86_64-linux-gnu.so"}))
    result = owlmetry.run("serve", cwd=tmp_path, env={"SHIV_ROOT": str(cache)})
    assert result.returncode == 1
    assert result.stderr.startswith("owlmetry.pyz: error: built for CPython 3.99")
    assert "run it with Python 3.99" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [cache]
