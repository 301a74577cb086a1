"""A real nginx, as a child process, running the shipped deploy/nginx/owlmetry.conf.

The site file is used as shipped except for what a test cannot use: the listen ports, the
certificate paths and the upstream `server` lines are substituted (each substitution must
match, so an edit to the shipped file that breaks them fails loudly here). The file is included
in a minimal main configuration, as Debian's nginx.conf includes sites-enabled/, with every
path nginx writes (pid, logs, temporary files) under the test's own prefix folder, so it runs
as root and as an ordinary user alike.
"""

import asyncio
import os
import re
import shutil
import socket
from pathlib import Path

from tests.ports import free_port

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "owlmetry.conf"
NO_NGINX = "nginx not found (apt-get install nginx): every test behind nginx was SKIPPED"
SAFETY_S = 30


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
        None)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_dual_stack_port() -> int:
    """A port free on 127.0.0.1 and (where there is one) ::1: nginx listens on both."""
    for _ in range(100):
        port = free_port()
        if not ipv6_loopback():
            return port
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.bind(("::1", port))
            return port
        except OSError:
            continue
    raise AssertionError("no free port on both loopback addresses")


def substitute(text: str, pattern: str, replacement: str, count: int) -> str:
    new, made = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert made == count, f"deploy/nginx/owlmetry.conf: {pattern!r} matched {made} times, not {count}"
    return new


def site_config(http_port: int, https_port: int, cert: str, key: str,
                upstreams: list[int]) -> str:
    text = SHIPPED.read_text()
    v6 = ipv6_loopback()
    for shipped, port in ((80, http_port), (443, https_port)):
        text = substitute(text, rf"^(\s*listen ){shipped}\b", rf"\g<1>127.0.0.1:{port}", 1)
        text = substitute(text, rf"^(\s*listen )\[::\]:{shipped}\b(.*)$",
                          rf"\g<1>[::1]:{port}\g<2>" if v6 else "", 1)
    text = substitute(text, r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", 1)
    text = substitute(text, r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", 1)
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
    return substitute(text, r"^\s*server 127\.0\.0\.1:8080;\n", servers, 1)


def main_config(prefix: Path) -> str:
    temp = prefix / "temp"
    return f"""
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/owlmetry.conf;
}}
"""


class Nginx:
    def __init__(self, binary: str, prefix: Path, cert: str, key: str):
        self.binary, self.prefix, self.cert, self.key = binary, prefix, cert, key
        self.http_port = self.https_port = 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, upstreams: list[int]) -> None:
        # A port found free can be taken before nginx binds it (other tests run beside this
        # one): then nginx exits at once saying so, and it is tried again on other ports.
        for _ in range(3):
            if await self._start(upstreams):
                return
        raise AssertionError(f"nginx found no free ports:\n{self.error_log()}")

    async def _start(self, upstreams: list[int]) -> bool:
        (self.prefix / "temp").mkdir(parents=True, exist_ok=True)
        (self.prefix / "error.log").write_text("")  # this attempt's messages only
        self.http_port, self.https_port = free_dual_stack_port(), free_dual_stack_port()
        (self.prefix / "owlmetry.conf").write_text(site_config(
            self.http_port, self.https_port, self.cert, self.key, upstreams))
        (self.prefix / "nginx.conf").write_text(main_config(self.prefix))
        # As root, nginx would run its workers as `nobody`, who cannot read the test's files.
        user = "user root;" if os.geteuid() == 0 else ""
        directives = (f"daemon off; master_process on; worker_processes 1; {user} "
                      f"pid {self.prefix}/nginx.pid; error_log {self.prefix}/error.log info;")
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
            "-c", str(self.prefix / "nginx.conf"), "-g", directives,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return await self._listening()

    async def _listening(self) -> bool:
        """True once nginx listens; False if it gave up because a port was taken.

        nginx starts its workers only once it holds every listening socket (it retries a
        taken port for a few seconds first), so that line in its log, not a connection that
        anything on the port could accept, says it is ready.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SAFETY_S
        while True:
            if self.process.returncode is not None:
                assert "Address already in use" in self.error_log(), \
                    f"nginx exited:\n{self.error_log()}"
                return False
            if "start worker process" in self.error_log():
                return True
            assert loop.time() < deadline, f"nginx did not start:\n{self.error_log()}"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                await asyncio.wait_for(self.process.wait(), SAFETY_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
