"""Email login codes: their part of the store's interface and their SQL.

A code is kept as a hash; times are milliseconds like every `now`, emails lower-case. Mixed into
`Store`, which sets `self.engine`. Must not make codes or know their lifetimes and limits: the
callers pass those (`owlmetry.login_codes`).
"""

from owlmetry.store.engine import Engine

# How many codes the email got after $2, and when the oldest of them was made. Run after
# LOCK_EMAIL, so that no other send slips between this count and the insert.
RECENT_LOGIN_CODES = """
SELECT count(*), min(created_at) FROM login_codes WHERE email = $1 AND created_at > $2
"""

# Run first in a send's transaction: a lock on the email ($1) until the transaction ends.
# PostgreSQL: count-then-insert is not atomic under READ COMMITTED, so sends for one email take
# turns (two-key advisory locks are a key space apart from the one-key migration lock).
# SQLite needs none: its transactions run one at a time.
LOGIN_CODE_LOCK = 0x6F776C63
LOCK_EMAIL = {
    "sqlite": None,
    "postgresql": f"SELECT pg_advisory_xact_lock({LOGIN_CODE_LOCK}, hashtext($1))",
}

ADD_LOGIN_CODE = """
INSERT INTO login_codes (id, email, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
"""

DISCARD_LOGIN_CODE = "DELETE FROM login_codes WHERE id = $1"

FORGET_LOGIN_CODES = "DELETE FROM login_codes WHERE created_at <= $1"

# One verification, in one statement: every outstanding code of the email counts the attempt,
# and the one that matches is used. A code that has counted $4 attempts is void. Concurrent
# verifications update the same rows one after the other (PostgreSQL re-checks the WHERE on the
# row it waited for), so neither a code's single use nor its attempt limit can be raced.
USE_LOGIN_CODE = """
UPDATE login_codes
SET attempts = attempts + 1,
    used_at = CASE WHEN code_hash = $2 THEN CAST($3 AS BIGINT) END
WHERE email = $1 AND used_at IS NULL AND expires_at > CAST($3 AS BIGINT) AND attempts < $4
RETURNING used_at
"""


class LoginCodes:
    engine: Engine

    async def add_login_code(
        self, code_id: str, email: str, code_hash: str, now: int, expires_at: int,
        window_start: int, limit: int,
    ) -> int | None:
        """Keep a new code unless `limit` codes of the email were made after `window_start`.

        None when kept; otherwise the creation time of the oldest code counted (a slot frees
        when it leaves the window). Count and insert are one step: concurrent calls for an email
        never keep more than `limit`. Codes of every email made at or before `window_start` are
        deleted (they are expired, and the limit no longer counts them)."""
        email = email.lower()
        lock = LOCK_EMAIL[self.engine.name]
        async with self.engine.transaction() as run:
            if lock:
                await run(lock, email)
            ((count, oldest),) = await run(RECENT_LOGIN_CODES, email, window_start)
            if count >= limit:
                return oldest
            await run(ADD_LOGIN_CODE, code_id, email, code_hash, now, expires_at)
        await self.engine.write(FORGET_LOGIN_CODES, window_start)
        return None

    async def discard_login_code(self, code_id: str) -> None:
        """Forget a code as if it had never been made (its mail could not be sent)."""
        await self.engine.write(DISCARD_LOGIN_CODE, code_id)

    async def use_login_code(
        self, email: str, code_hash: str, now: int, max_attempts: int
    ) -> bool:
        """One login attempt: True, and the code is used up, when an unused code of the email
        with that hash has not expired (`expires_at > now`) and has counted fewer than
        `max_attempts` attempts. Every attempt, right or wrong, counts against each of the
        email's outstanding codes, so a code is void after `max_attempts` wrong ones. Atomic:
        a code is used once however many attempts race."""
        rows = await self.engine.write(USE_LOGIN_CODE, email.lower(), code_hash, now,
                                       max_attempts)
        return any(used_at is not None for (used_at,) in rows)
