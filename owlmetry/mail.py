"""Sending a login code to its email address: through SMTP when SMTP_URL is set, else into the
server log (development).

Owns the message and the SMTP conversation (aiosmtplib), and turns every way a send can fail
into `MailError`, so a route can answer 503 instead of 500. With SMTP configured nothing here
logs a code, a password or a whole email address. Must not decide who gets a code: the route
does.
"""

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import aiosmtplib

from owlmetry.config import SmtpSettings
from owlmetry.login_codes import CODE_TTL_MS
from owlmetry.redact import mask_email

# Per SMTP step (connect, each command); an unreachable relay fails the send, not the server.
SMTP_TIMEOUT_S = 15
SUBJECT = "Your Owlmetry login code"

log = logging.getLogger("owlmetry.mail")


class MailError(Exception):
    """The code could not be handed to the SMTP server; the message is safe to log."""


def login_message(sender: str, email: str, code: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email
    message["Subject"] = SUBJECT
    # Relays and spam filters expect both; the domain is given so that make_msgid does not
    # look up this host's name on every mail.
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].partition("@")[2] or "localhost")
    minutes = CODE_TTL_MS // 60_000
    message.set_content(
        f"Your Owlmetry login code is {code}\n\n"
        f"It expires in {minutes} minutes and works once. If you did not ask for it, "
        "you can ignore this email.\n"
    )
    return message


class Mailer:
    def __init__(self, smtp: SmtpSettings | None, sender: str):
        self.smtp = smtp
        self.sender = sender

    def announce(self) -> None:
        """Said once at start-up: where codes go when there is no SMTP server."""
        if self.smtp is None:
            log.warning("SMTP_URL is not set: login codes are written to this log instead of "
                        "being mailed (fine for development, not for users)")

    async def send_login_code(self, email: str, code: str) -> None:
        if self.smtp is None:
            # Development: the log is the mailbox, so the code is the point of the line.
            log.info("login code for %s: %s", mask_email(email), code)
            return
        smtp = self.smtp
        try:
            await aiosmtplib.send(
                login_message(self.sender, email, code),
                hostname=smtp.host, port=smtp.port,
                username=smtp.username, password=smtp.password,
                use_tls=smtp.implicit_tls,
                start_tls=False if smtp.implicit_tls else smtp.starttls,
                timeout=SMTP_TIMEOUT_S,
            )
        # Refused, timed out, TLS, a reply it did not expect (SMTPException), or an address the
        # server cannot take (ValueError): all mean the same to the caller.
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            # A refusal may quote the recipient (or, however unlikely, the message).
            reason = f"{type(exc).__name__}: {exc}".replace(email, mask_email(email))
            reason = reason.replace(code, "*" * len(code))
            log.warning("could not mail a login code to %s via %s:%d: %s",
                        mask_email(email), smtp.host, smtp.port, reason)
            raise MailError(reason) from None
        log.info("login code mailed to %s", mask_email(email))
