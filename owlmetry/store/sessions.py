"""Ended sessions: their part of the store's interface, their SQL and their rows.

A session is not stored while it lasts (its token is the credential); only its end is. A row
ends one session (`session_key`: a logout), or every session of the user issued up to its
`created_at` (`session_key` NULL: `owlmetry users revoke-sessions`). Rows are numbered (`seq`)
in the order they commit, so a server that has read up to N asks only for what came after
it: each revocation takes the next number under a table lock (PostgreSQL; SQLite's writes take
turns anyway), so no number can commit after a bigger one is read. A row goes once the token it
ends has expired, or a later all-sessions row of the user covers it; the newest row never
goes, so a number is never handed out twice. Mixed into `Store`, which sets `self.engine`; must
not know tokens or decide what ends.
"""

from dataclasses import dataclass

from owlmetry.store.engine import Engine

REVOCATION_COLUMNS = "seq, user_id, session_key, created_at, expires_at"

# First in a revocation's transaction, on PostgreSQL: revocations take turns (reads go on).
LOCK_REVOCATIONS = {
    "sqlite": None,
    "postgresql": "LOCK TABLE session_revocations IN EXCLUSIVE MODE",
}

# $1 the user, $2 the session's key (NULL: all of the user's sessions), $3 now, $4 when the row
# may go (NULL: never).
RECORD_REVOCATION = f"""
INSERT INTO session_revocations ({REVOCATION_COLUMNS})
SELECT coalesce(max(seq), 0) + 1, $1, $2, CAST($3 AS BIGINT), CAST($4 AS BIGINT)
FROM session_revocations
RETURNING {REVOCATION_COLUMNS}
"""

# After an all-sessions row ($2 its seq): the user's earlier rows say nothing it does not.
FORGET_COVERED = "DELETE FROM session_revocations WHERE user_id = $1 AND seq < $2"

# Rows whose token has expired. Run after the insert, whose row (the newest) has not.
FORGET_EXPIRED = "DELETE FROM session_revocations WHERE expires_at <= $1"

REVOCATIONS_AFTER = f"""
SELECT {REVOCATION_COLUMNS} FROM session_revocations WHERE seq > $1 ORDER BY seq
"""


@dataclass(frozen=True, slots=True)
class Revocation:
    seq: int
    user_id: str
    session_key: str | None  # None: every session of the user issued up to `created_at`
    created_at: int
    expires_at: int | None


class SessionRevocations:
    engine: Engine

    async def end_session(self, user_id: str, session_key: str, expires_at: int | None,
                          now: int) -> Revocation:
        """Record that the session `session_key` has ended; `expires_at` (ms) is its token's
        expiry, after which the row goes (None: it never expires, nor does the row)."""
        if expires_at is not None and expires_at <= now:
            raise ValueError("an expired session needs no revocation")
        return await self._record(user_id, session_key, expires_at, now)

    async def end_all_sessions(self, user_id: str, now: int) -> Revocation:
        """Record that every session of the user issued up to `now` has ended."""
        return await self._record(user_id, None, None, now)

    async def revocations_after(self, seq: int) -> list[Revocation]:
        """Every revocation numbered above `seq`, in order."""
        return [Revocation(*row) for row in await self.engine.read(REVOCATIONS_AFTER, seq)]

    async def _record(self, user_id: str, session_key: str | None, expires_at: int | None,
                      now: int) -> Revocation:
        engine = self.engine
        async with engine.transaction() as run:
            if LOCK_REVOCATIONS[engine.name]:
                await run(LOCK_REVOCATIONS[engine.name])
            (row,) = await run(RECORD_REVOCATION, user_id, session_key, now, expires_at)
            revocation = Revocation(*row)
            if session_key is None:
                await run(FORGET_COVERED, user_id, revocation.seq)
            await run(FORGET_EXPIRED, now)
        return revocation
