"""The `email` channel: one mail per notification to the recipient's address, through SMTP_URL.

Its target is the recipient user (`Targets(RECIPIENT)`: the claim gives the user's id and
email address), so its push records hold the user id as `device_id`. Owns what a notification
mail says (the title as subject; the body, then the link, a relative one made absolute with
WEB_APP_URL) and how a send's failure maps onto an answer: a 4xx reply or an unreachable relay
is a retry, a 5xx reply a failure with that reply. It never answers REMOVED: an address is not
a token. Without SMTP_URL the channel is unavailable and its deliveries are skipped. The SMTP
conversation itself is `owlmetry.mail`'s.
"""

import asyncio
import urllib.parse

from owlmetry.config import Config
from owlmetry.mail import Mailer, MailError
from owlmetry.notify.channels.base import Answer, Channel
from owlmetry.store import Claim, PushOutcome, PushTarget, TargetKind, Targets

# SMTP sessions open at once (each mail is one session): a fan-out to thousands of users
# queues here instead of opening thousands of connections to the relay.
MAX_SESSIONS = 8
DELIVERED = Answer(PushOutcome.DELIVERED)  # aiosmtplib gives the reply's text, not its code
CLOSED = Answer(PushOutcome.RETRY, None, "the channel is closing")


def absolute_link(link: str | None, web_app_url: str | None) -> str | None:
    """`link`, with WEB_APP_URL in front when it is relative ("/issues/1") and that is set: a
    mail reader has no page to resolve it against."""
    if not link or not web_app_url:
        return link
    parts = urllib.parse.urlsplit(link)
    if parts.scheme or parts.netloc:
        return link
    return f"{web_app_url}/{link.lstrip('/')}"


class Email(Channel):
    name = "email"
    targets = Targets(TargetKind.RECIPIENT)

    def __init__(self, mailer: Mailer, web_app_url: str | None = None):
        self._mailer = mailer
        self._web_app_url = web_app_url
        self._sessions = asyncio.Semaphore(MAX_SESSIONS)
        self._sending: set[asyncio.Task] = set()  # sends under way or waiting for a session
        self._closed = False
        if mailer.smtp is None:
            self.unavailable = "SMTP_URL is not set"

    @classmethod
    def from_config(cls, config: Config) -> "Email":
        return cls(Mailer(config.smtp, config.email_from), config.web_app_url)

    def prepare(self, claim: Claim) -> tuple[str, str | None, str | None]:
        content = claim.content
        return content.title, content.body, absolute_link(content.link, self._web_app_url)

    async def send(self, prepared: tuple[str, str | None, str | None],
                   target: PushTarget) -> Answer:
        title, body, link = prepared
        if self._closed:
            return CLOSED
        task = asyncio.current_task()
        self._sending.add(task)
        try:
            async with self._sessions:
                await self._mailer.send_notification(target.token, title, body, link)
        except MailError as exc:
            outcome = PushOutcome.RETRY if exc.transient else PushOutcome.FAILED
            return Answer(outcome, exc.code, str(exc))
        finally:
            self._sending.discard(task)
        return DELIVERED

    async def close(self) -> None:
        """Sends under way or waiting for a session end as retries (the interface's promise):
        a shutdown must not wait for a queue of mail, which goes back to the delivery queue."""
        self._closed = True
        for task in list(self._sending):
            task.cancel()


CHANNEL = Email
