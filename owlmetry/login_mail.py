"""The login codes' mail queue worker, inside `serve`: mails every code whose mail is due, in the
background, so that `send-code` answers the same, in the same time, whoever asks and whether or
not the relay is up.

The queue is the `login_codes` table (a due `mail_at`); the store's claim leases each mail to one
worker, so several servers on one PostgreSQL database share it and a crashed worker's mail is
claimed again once its lease lapses. A relay that says "not now" (4xx, unreachable) gets the mail
again after `owlmetry.backoff`'s wait; one that refuses it for good (5xx, a bad address) does
not, until the person asks again. A code that expired or was used meanwhile is not mailed.

Owns the loop, its leases and retries. Must not decide who gets a code (the route and the store
do), nor hold SQL or talk SMTP (`owlmetry.mail`).
"""

import asyncio
import logging
from collections.abc import Callable

from owlmetry import login_codes
from owlmetry.backoff import backoff
from owlmetry.ids import new_id
from owlmetry.login_codes import CodeHasher
from owlmetry.mail import Mailer, MailError
from owlmetry.redact import mask_email
from owlmetry.store import DatabaseUnavailable, Store
from owlmetry.store.login_codes import LoginMail

log = logging.getLogger("owlmetry.mail")

BATCH = 8           # mails claimed (and sent) at once
POLL_S = 2.0        # looks for due mail this often unwoken: retries, other servers' asks
ERROR_PAUSE_S = 1.0  # after the database failed a claim


class LoginMailWorker:
    def __init__(self, store: Store, mailer: Mailer, hasher: CodeHasher,
                 clock: Callable[[], int], poll_s: float = POLL_S):
        self._store, self._mailer, self._hasher, self._clock = store, mailer, hasher, clock
        self._poll_s = poll_s
        self.name = f"login-mail-{new_id()}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for due mail now (an ask just queued some, or may have)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop at once: mail under way goes back to the queue, due now (for the next start or
        another server)."""
        if self._task is not None:
            # On Python 3.11 `asyncio.wait_for` swallows a cancellation that comes in the turn
            # its awaitable ends (a wake, a claim, an SMTP connect failing): the loop would go
            # on and this wait never end. So the loop also stops by the flag, and the task is
            # cancelled until it has ended.
            self._stopping = True
            self._wake.set()
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.5)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.drain()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:  # the store has said so, once for every reader
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            except Exception:
                log.exception("login-code mail: the queue could not be read")
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            if claimed == BATCH:
                continue  # there may be more due
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            except TimeoutError:
                pass

    async def drain(self) -> int:
        """Claim one batch of due mail and send it; how many were claimed."""
        now = self._clock()
        mails = await self._store.claim_login_mail(self.name, now,
                                                   now + login_codes.MAIL_LEASE_MS, BATCH)
        sends = [asyncio.create_task(self._send(mail)) for mail in mails]
        try:
            await asyncio.gather(*sends)
        except asyncio.CancelledError:
            for send in sends:
                send.cancel()
            await asyncio.shield(self._release(mails))
            raise
        return len(mails)

    async def _send(self, mail: LoginMail) -> None:
        store = self._store
        try:
            code = self._hasher.unseal(mail.code_id, mail.email, mail.sealed)
        except ValueError:  # sealed under another JWT secret: the code cannot log in either
            await store.login_mail_dropped(mail.code_id, self.name)
            return
        try:
            await self._mailer.send_login_code(mail.email, code)
        except MailError as exc:
            if exc.transient:
                wait_s = backoff(login_codes.MAIL_RETRY_BASE_S, mail.attempt - 1,
                                 login_codes.MAIL_RETRY_CAP_S)
                await store.login_mail_later(mail.code_id, self.name,
                                             self._clock() + int(wait_s * 1000))
            else:
                log.warning("login code for %s not mailed: the relay refused it for good",
                            mask_email(mail.email))
                await store.login_mail_dropped(mail.code_id, self.name)
            return
        await store.login_mail_sent(mail.code_id, self.name, self._clock())

    async def _release(self, mails: list[LoginMail]) -> None:
        now = self._clock()
        for mail in mails:
            try:
                await self._store.login_mail_later(mail.code_id, self.name, now)
            except Exception:  # the lease lapses by itself
                log.warning("login-code mail: a claim was not handed back; it is sent after "
                            "its lease lapses")
                return
