"""A real SMTP server for the tests (aiosmtpd on a free loopback port) and the mailbox it
fills: login codes and notification mail are read from what it received."""

import asyncio
import email
import re
import ssl

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

SMTP_USER, SMTP_PASSWORD = "owlmetry", "smtp-pass-3f9a1c"
# The test SMTP server takes passwords over plain TCP on loopback, which it warns about.
SMTP_WARNING = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Mailbox:
    """An aiosmtpd handler keeping every message; while `refusal` is set it turns mail away with
    that reply (`TRY_LATER`: a 4xx, or `REJECTED`: a 5xx)."""

    TRY_LATER = "451 4.3.0 Mailbox unavailable, try again later"
    REJECTED = "550 5.1.1 No such mailbox here"

    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.refusal: str | None = None
        self.port = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refusal:
            return self.refusal
        message = email.message_from_bytes(envelope.content)
        message["X-Rcpt-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def codes_for(self, address: str) -> list[str]:
        return [re.search(r"\b(\d{6})\b", m.get_payload(decode=True).decode()).group(1)
                for m in self.messages if m["X-Rcpt-To"] == address.lower()]

    def last_code(self, address: str) -> str:
        return self.codes_for(address)[-1]

    async def wait_for(self, address: str, count: int = 1, timeout_s: float = 10.0) -> list[str]:
        """The codes mailed to `address` once there are at least `count` of them (login codes
        are mailed in the background); AssertionError if they do not come in `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(codes := self.codes_for(address)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{count} code(s) for {address} never came; got {codes}")
            await asyncio.sleep(0.01)
        return codes

    def to(self, address: str) -> list[email.message.Message]:
        return [m for m in self.messages if m["X-Rcpt-To"] == address.lower()]


def authenticate_smtp(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


async def start_smtp(box: Mailbox, implicit_tls: ssl.SSLContext | None = None, **options):
    """An SMTP server on a free loopback port that takes only our credentials."""
    options = {"auth_require_tls": False, **options}
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(box, hostname="localhost", authenticator=authenticate_smtp,
                     auth_required=True, **options),
        "127.0.0.1", 0, ssl=implicit_tls)
    box.port = server.sockets[0].getsockname()[1]
    return server


@pytest.fixture
async def mailbox():
    """A Mailbox behind a running SMTP server (`mailbox.port`), for the test's duration."""
    box = Mailbox()
    server = await start_smtp(box)
    yield box
    server.close()
