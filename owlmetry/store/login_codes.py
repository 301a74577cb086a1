"""Email login codes: their part of the store's interface and their SQL: asking for a code, a
login attempt, the codes' mail queue, the per-client-address counts and the per-email failures.

A code is kept as a hash and a seal; times are milliseconds like every `now`, emails lower-case.
Mixed into `Store`, which sets `self.engine`. Must not make codes or know their lifetimes,
limits and delays: the callers pass those (`owlmetry.login_codes`).

Asking and attempting are one transaction each that runs the same statements whether or not
the email has an account (a statement may change no row), so neither their answer nor their
cost tells the two apart.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass

from owlmetry.store.engine import Engine

# Run first in an ask's or attempt's transaction: a lock on the email ($1) until it ends.
# PostgreSQL: read-then-write is not atomic under READ COMMITTED, so one email's asks and
# attempts take turns (two-key advisory locks are a key space apart from the one-key migration
# lock). SQLite needs none: its transactions run one at a time. Taken before the address's
# count (HIT_LIMIT locks its row), always in that order, so two transactions never wait on
# each other in a circle.
LOGIN_CODE_LOCK = 0x6F776C63
LOCK_EMAIL = {
    "sqlite": None,
    "postgresql": f"SELECT pg_advisory_xact_lock({LOGIN_CODE_LOCK}, hashtext($1))",
}

# One more request in bucket $1's window starting at $2 (a new window starts the count again);
# the count so far.
HIT_LIMIT = """
INSERT INTO login_limits (bucket, window_start, hits) VALUES ($1, $2, 1)
ON CONFLICT (bucket) DO UPDATE SET
    hits = CASE WHEN login_limits.window_start = excluded.window_start
                THEN login_limits.hits + 1 ELSE 1 END,
    window_start = excluded.window_start
RETURNING hits
"""

# An outstanding code ($1's, unused, unexpired at $2, sealed) mailed again: due now, unless its
# mail is queued already, it went $3 times, or the last one went after $4.
RESEND_LOGIN_CODE = """
UPDATE login_codes SET mail_at = $2
WHERE email = $1 AND used_at IS NULL AND expires_at > $2 AND code_sealed IS NOT NULL
  AND mail_at IS NULL AND mails_sent < $3 AND COALESCE(last_mailed_at, created_at) <= $4
RETURNING id
"""

# A new code, its mail due at once, when the email is a user's (or $7: anyone may sign up) and
# it has no outstanding code. Sealed codes only: one made before they were kept cannot be
# mailed again, so it does not stand in the way of a new one.
ADD_LOGIN_CODE = """
INSERT INTO login_codes (id, email, code_hash, code_sealed, created_at, expires_at, mail_at)
SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT),
       CAST($5 AS BIGINT), CAST($6 AS BIGINT), CAST($5 AS BIGINT)
WHERE (CAST($7 AS BOOLEAN) OR EXISTS (SELECT 1 FROM users WHERE email = $2))
  AND NOT EXISTS (
    SELECT 1 FROM login_codes
    WHERE email = $2 AND used_at IS NULL AND expires_at > $5 AND code_sealed IS NOT NULL)
RETURNING id
"""

FAILURES = "SELECT failures, not_before FROM login_failures WHERE email = $1"

# One verification: every outstanding code of the email counts the attempt, and the one that
# matches is used. Concurrent verifications of an email take turns (LOCK_EMAIL; SQLite's one
# writer), and PostgreSQL re-checks the WHERE on a row it waited for, so a code is used once.
USE_LOGIN_CODE = """
UPDATE login_codes
SET attempts = attempts + 1,
    used_at = CASE WHEN code_hash = $2 THEN CAST($3 AS BIGINT) END
WHERE email = $1 AND used_at IS NULL AND expires_at > CAST($3 AS BIGINT)
RETURNING used_at
"""

FORGET_FAILURES = "DELETE FROM login_failures WHERE email = $1 RETURNING email"

COUNT_FAILURE = """
INSERT INTO login_failures (email, failures, not_before, last_failed_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (email) DO UPDATE SET
    failures = excluded.failures, not_before = excluded.not_before,
    last_failed_at = excluded.last_failed_at
"""

# ---- The mail queue ---------------------------------------------------------------------------

# Up to $4 due mails of outstanding codes, leased to $1 until $3. `{lock}` is the engine's
# `skip_locked`: several servers on one PostgreSQL database never claim one mail together.
CLAIM_LOGIN_MAIL = """
UPDATE login_codes
SET mail_at = $3, mail_claimed_by = $1, mail_attempts = mail_attempts + 1
WHERE id IN (
    SELECT id FROM login_codes
    WHERE mail_at <= $2 AND used_at IS NULL AND expires_at > $2 AND code_sealed IS NOT NULL
    ORDER BY mail_at
    LIMIT $4 {lock})
RETURNING id, email, code_sealed, mail_attempts
"""

# The ends of a claimed mail, by its holder ($2) only: a lease that lapsed and was claimed
# again belongs to the new holder.
LOGIN_MAIL_SENT = """
UPDATE login_codes
SET mail_at = NULL, mail_claimed_by = NULL, mail_attempts = 0, mails_sent = mails_sent + 1,
    last_mailed_at = $3
WHERE id = $1 AND mail_claimed_by = $2
"""
LOGIN_MAIL_LATER = "UPDATE login_codes SET mail_at = $3 WHERE id = $1 AND mail_claimed_by = $2"
LOGIN_MAIL_DROPPED = """
UPDATE login_codes SET mail_at = NULL, mail_claimed_by = NULL, mail_attempts = 0
WHERE id = $1 AND mail_claimed_by = $2
"""

# ---- Clean-up ---------------------------------------------------------------------------------

PRUNE_LOGIN_CODES = """
DELETE FROM login_codes WHERE id IN (
    SELECT id FROM login_codes WHERE created_at <= $1 LIMIT $2)
RETURNING id
"""
PRUNE_LOGIN_LIMITS = """
DELETE FROM login_limits WHERE bucket IN (
    SELECT bucket FROM login_limits WHERE window_start <= $1 LIMIT $2)
RETURNING bucket
"""
# Counts below the lock ($3) whose last failure was at or before $1.
PRUNE_LOGIN_FAILURES = """
DELETE FROM login_failures WHERE email IN (
    SELECT email FROM login_failures WHERE last_failed_at <= $1 AND failures < $3 LIMIT $2)
RETURNING email
"""


class Attempt(enum.Enum):
    """What became of a login attempt."""

    ACCEPTED = "accepted"   # a code of the email matched and is used now
    REFUSED = "refused"     # no outstanding code matched: one more failure
    LIMITED = "limited"     # the client address had its count: nothing was checked
    WAITING = "waiting"     # the email's failures ask for a wait first: nothing was checked
    LOCKED = "locked"       # the email has the most failures: nothing is checked any more


@dataclass(frozen=True)
class AttemptResult:
    outcome: Attempt
    wait_ms: int = 0  # LIMITED, WAITING: until the next attempt may count


@dataclass(frozen=True)
class LoginMail:
    """A claimed mail: the code's row id, its email, its sealed code, and which try this is."""

    code_id: str
    email: str
    sealed: str
    attempt: int


class LoginCodes:
    engine: Engine

    async def _email_and_address(self, run, email: str, bucket: str, now: int,
                                 window_ms: int, limit: int) -> int:
        """In `run`'s transaction: the email's lock (PostgreSQL), then the request counted in
        the client address's `bucket`; how long to wait when it is full, else 0."""
        lock = LOCK_EMAIL[self.engine.name]
        if lock:
            await run(lock, email)
        return await self._hit(run, bucket, now, window_ms, limit)

    async def _hit(self, run, bucket: str, now: int, window_ms: int, limit: int) -> int:
        """0 when the request fits `bucket`'s count, else how long until its window ends."""
        window_start = now - now % window_ms
        ((hits,),) = await run(HIT_LIMIT, bucket, window_start)
        return window_start + window_ms - now if hits > limit else 0

    async def ask_login_code(
        self, email: str, bucket: str, code_id: str, code_hash: str, sealed: str, now: int,
        expires_at: int, *, signup: bool, window_ms: int, limit: int, resend_before: int,
        max_mails: int,
    ) -> int:
        """A code asked for: count it in the client address's `bucket` (at most `limit` per
        window of `window_ms`), then queue a mail: the outstanding code's again (unless it was
        mailed `max_mails` times, or last after `resend_before`), or a new code's, when the
        email has none outstanding and is a user's (or `signup`). 0 when counted, else (the
        bucket is full, nothing else done) how long until its window ends."""
        email = email.lower()
        async with self.engine.transaction() as run:
            wait = await self._email_and_address(run, email, bucket, now, window_ms, limit)
            if wait:
                return wait
            await run(RESEND_LOGIN_CODE, email, now, max_mails, resend_before)
            await run(ADD_LOGIN_CODE, code_id, email, code_hash, sealed, now, expires_at, signup)
        return 0

    async def try_login_code(
        self, email: str, bucket: str, code_hash: str, now: int, *, window_ms: int, limit: int,
        delay_after: Callable[[int], int | None],
    ) -> AttemptResult:
        """One login attempt: counted in the client address's `bucket`, then, unless the
        email's consecutive failures ask for a wait or lock it (`delay_after(failures)`: the
        wait after that many, None for locked), the code checked: a match is used (once, however
        many attempts race) and forgets the failures; a miss counts one more."""
        email = email.lower()
        async with self.engine.transaction() as run:
            wait = await self._email_and_address(run, email, bucket, now, window_ms, limit)
            if wait:
                return AttemptResult(Attempt.LIMITED, wait)
            found = await run(FAILURES, email)
            failures, not_before = found[0] if found else (0, 0)
            if delay_after(failures) is None:
                return AttemptResult(Attempt.LOCKED)
            if not_before > now:
                return AttemptResult(Attempt.WAITING, not_before - now)
            rows = await run(USE_LOGIN_CODE, email, code_hash, now)
            if any(used_at is not None for (used_at,) in rows):
                await run(FORGET_FAILURES, email)
                return AttemptResult(Attempt.ACCEPTED)
            failures += 1
            await run(COUNT_FAILURE, email, failures, now + (delay_after(failures) or 0), now)
        return AttemptResult(Attempt.REFUSED)

    async def unlock_login(self, email: str) -> bool:
        """Forget the email's failures (its lock, its wait); whether it had any."""
        return bool(await self.engine.write(FORGET_FAILURES, email.lower()))

    # ---- The mail queue -----------------------------------------------------------------------

    async def claim_login_mail(self, worker: str, now: int, lease_until: int,
                               limit: int) -> list[LoginMail]:
        """Lease up to `limit` due mails of outstanding codes to `worker` until `lease_until`."""
        rows = await self.engine.write_lease(
            CLAIM_LOGIN_MAIL.format(lock=self.engine.skip_locked), worker, now, lease_until,
            limit)
        return [LoginMail(*row) for row in rows]

    async def login_mail_sent(self, code_id: str, worker: str, now: int) -> None:
        await self.engine.write(LOGIN_MAIL_SENT, code_id, worker, now)

    async def login_mail_later(self, code_id: str, worker: str, due_at: int) -> None:
        """Try the mail again at `due_at` (the relay said not now, or the worker stops)."""
        await self.engine.write(LOGIN_MAIL_LATER, code_id, worker, due_at)

    async def login_mail_dropped(self, code_id: str, worker: str) -> None:
        """Send the mail no more (the relay refused it for good); a later ask may again."""
        await self.engine.write(LOGIN_MAIL_DROPPED, code_id, worker)

    # ---- Clean-up -----------------------------------------------------------------------------

    async def prune_login_codes(self, window_start: int, limit: int,
                                failures_before: int | None = None,
                                max_failures: int = 0) -> int:
        """Delete up to `limit` rows in all: codes made at or before `window_start`, address
        counts of windows that started by then, and (when `failures_before` is given) failure
        counts below `max_failures` whose last failure was at or before it; how many."""
        done = len(await self.engine.write_bulk(PRUNE_LOGIN_CODES, window_start, limit))
        if done < limit:
            done += len(await self.engine.write_bulk(PRUNE_LOGIN_LIMITS, window_start,
                                                     limit - done))
        if done < limit and failures_before is not None:
            done += len(await self.engine.write_bulk(PRUNE_LOGIN_FAILURES, failures_before,
                                                     limit - done, max_failures))
        return done
