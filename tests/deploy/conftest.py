"""Fixtures for the deployment tests: real `owlmetry serve` processes behind a real nginx.

The server processes and the mock APNs hosts are those of the durability tests
(tests/notify), imported, not copied. Where no nginx binary exists the tests are skipped, and
the end of the run says so in capitals.
"""

import asyncio
import ssl
import sys

import aiohttp
import orjson
import pytest

from tests.deploy.nginx import NO_NGINX, Nginx, find_nginx
from tests.notify.test_durability import SAFETY_S, servers  # noqa: F401  (fixture)

only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if any(NO_NGINX in str(report.longrepr) for report in skipped):
        terminalreporter.write_sep("!", NO_NGINX.upper(), red=True, bold=True)


@pytest.fixture
async def nginx(tmp_path, tls_files):
    """`await nginx(upstream_ports)` -> a running Nginx; stopped after the test."""
    binary = find_nginx()
    if binary is None:
        pytest.skip(NO_NGINX)
    started: list[Nginx] = []

    async def start(upstreams: list[int]) -> Nginx:
        proxy = Nginx(binary, tmp_path / f"nginx{len(started)}", *tls_files)
        started.append(proxy)
        await proxy.start(upstreams)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            await proxy.stop()
        for proxy in started:  # shown only when the test fails
            print(f"---- nginx error log ----\n{proxy.error_log()[-3000:]}")


@pytest.fixture
def client_tls(tls_files) -> ssl.SSLContext:
    """What a client trusts: the test's self-signed certificate, nothing else."""
    return ssl.create_default_context(cafile=tls_files[0])


def session_from(address: str, client_tls: ssl.SSLContext) -> aiohttp.ClientSession:
    """A client whose connections come from `address` (any 127.x address is this host), so
    that nginx and the server can tell it from each other (nginx connects from 127.0.0.1)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), ssl=client_tls)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


async def owlmetry(database_url: str, *args: str) -> str:
    """Run an `owlmetry` management command, as an operator would; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "owlmetry", *args, "--database", database_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), SAFETY_S)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


def access_lines(server) -> list[dict]:
    """The server's access log so far (its JSON lines on stdout)."""
    lines = []
    for line in list(server.output):
        if line.startswith(b"{"):
            record = orjson.loads(line)
            if "route" in record:
                lines.append(record)
    return lines


async def access_line(server, **match) -> dict:
    """The last access log line with these values, once the server has written it (it writes
    after the answer has left, so a client can see the answer first)."""
    return (await access_lines_with(server, 1, **match))[-1]


async def access_lines_with(server, count: int, **match) -> list[dict]:
    """The access log lines with these values, once there are at least `count`."""
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while True:
        found = [line for line in access_lines(server)
                 if all(line.get(key) == value for key, value in match.items())]
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, \
            f"fewer than {count} access log lines with {match} in:\n{server.log()[-3000:]}"
        await asyncio.sleep(0.02)
