"""Sending mail: login codes (through SMTP when SMTP_URL is set, else into the server log, for
development) and notifications (the `email` channel; SMTP only).

Owns the messages and the SMTP conversation (aiosmtplib), and turns every way a send can fail
into `MailError`, which says whether trying again later may help, so a route can answer 503
instead of 500 and the channel can retry. With SMTP configured nothing here logs a code, a
password or a whole email address. Every mail goes to exactly one recipient that
`owlmetry.emails` accepts, named to the relay as such (never read back from a header): an
address that slipped past the routes (`x,victim@example.com`) is refused here, not split.
Must not decide who gets mail: the mail queue (`login_mail`) or the channel does.
"""

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import aiosmtplib

from owlmetry.config import SmtpSettings
from owlmetry.emails import is_address
from owlmetry.login_codes import CODE_TTL_MS
from owlmetry.redact import mask_email

# Per SMTP step (connect, each command); an unreachable relay fails the send, not the server.
SMTP_TIMEOUT_S = 15
SUBJECT = "Your Owlmetry login code"

log = logging.getLogger("owlmetry.mail")


class MailError(Exception):
    """The mail could not be handed to the SMTP server; the message is safe to log.

    `transient`: the server said "not now" (a 4xx reply) or could not be reached, so the same
    mail may go through later; otherwise (a 5xx reply, an address it cannot take) it will not.
    `code`: the server's reply code, when it replied with a refusal.
    """

    def __init__(self, reason: str, transient: bool, code: int | None = None):
        super().__init__(reason)
        self.transient = transient
        self.code = code


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(400 <= refused.code < 500 for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 400 <= exc.code < 500
    return isinstance(exc, (OSError, TimeoutError))


def new_message(sender: str, email: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email
    message["Subject"] = subject
    # Relays and spam filters expect both; the domain is given so that make_msgid does not
    # look up this host's name on every mail.
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].partition("@")[2] or "localhost")
    message.set_content(text)
    return message


def login_message(sender: str, email: str, code: str) -> EmailMessage:
    minutes = CODE_TTL_MS // 60_000
    return new_message(sender, email, SUBJECT, (
        f"Your Owlmetry login code is {code}\n\n"
        f"It expires in {minutes} minutes and works once. If you did not ask for it, "
        "you can ignore this email.\n"))


def notification_message(sender: str, email: str, title: str, body: str | None,
                         link: str | None) -> EmailMessage:
    """The notification as plain text: the title is the subject; the body, then the link."""
    parts = [part for part in (body, link) if part]
    # A subject is one line: a title's line breaks would start new headers.
    subject = " ".join(title.split())
    return new_message(sender, email, subject, "\n\n".join(parts or [subject]) + "\n")


def one_address(email: str, what: str) -> None:
    """MailError (for good) unless `email` is exactly one address, before any header is made."""
    if not is_address(email):
        log.warning("not mailing %s to %s: not one email address", what, mask_email(email))
        raise MailError("not one email address", transient=False)


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
        one_address(email, "a login code")
        if self.smtp is None:
            # Development: the log is the mailbox, so the code is the point of the line.
            log.info("login code for %s: %s", mask_email(email), code)
            return
        await self._send(login_message(self.sender, email, code), email, "a login code",
                         hidden=code)
        log.info("login code mailed to %s", mask_email(email))

    async def send_notification(self, email: str, title: str, body: str | None,
                                link: str | None) -> None:
        """MailError when it could not be sent; there is no log fallback for these."""
        one_address(email, "a notification")
        if self.smtp is None:
            raise MailError("SMTP_URL is not set", transient=False)
        await self._send(notification_message(self.sender, email, title, body, link), email,
                         "a notification")

    async def _send(self, message: EmailMessage, email: str, what: str,
                    hidden: str | None = None) -> None:
        smtp = self.smtp
        try:
            await aiosmtplib.send(
                message,
                sender=parseaddr(self.sender)[1], recipients=[email],
                hostname=smtp.host, port=smtp.port,
                username=smtp.username, password=smtp.password,
                use_tls=smtp.implicit_tls,
                start_tls=False if smtp.implicit_tls else smtp.starttls,
                timeout=SMTP_TIMEOUT_S,
            )
        # Refused, timed out, TLS, a reply it did not expect (SMTPException), or an address the
        # server cannot take (ValueError).
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            # A refusal may quote the recipient (or, however unlikely, the message).
            reason = f"{type(exc).__name__}: {exc}".replace(email, mask_email(email))
            if hidden:
                reason = reason.replace(hidden, "*" * len(hidden))
            log.warning("could not mail %s to %s via %s:%d: %s",
                        what, mask_email(email), smtp.host, smtp.port, reason)
            code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
            raise MailError(reason, is_transient(exc), code) from None
