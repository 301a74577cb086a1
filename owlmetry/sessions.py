"""Sessions: which user tokens are still good, and ending them (logout, revoke-sessions).

Every user token is a session. Its key is its `sid` claim (a uuid7, which also says when it
was issued), or for a token without one (minted by upstream Owlmetry with a shared JWT_SECRET,
or by an earlier release) the token's own hash, issued at its `iat`. A session ends when a
revocation names its key, or when an all-sessions revocation of its user is at least as new as
it. Each server process holds every revocation in memory, so checking a request's session
costs two dictionary look-ups and no database read: its own revocations count at once, and
those of other processes (another server on the same PostgreSQL, the `owlmetry` command) once
it has read them, at most POLL_S later. Owns that state and the loop that keeps it current;
must not verify tokens (`credentials`) nor know HTTP.
"""

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from owlmetry.ids import UUID_TEXT
from owlmetry.store import Revocation, Store

log = logging.getLogger("owlmetry.sessions")

# How stale another process's revocations may be here: the most a revoked token is still
# accepted by a server that did not revoke it.
POLL_S = 1.0
# How often tokens long expired are dropped from memory (their rows go at the next revocation).
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    """A verified token's session: `expires` in seconds (the JWT's `exp`), `issued_ms` in ms."""

    user_id: str
    key: str
    issued_ms: int
    expires: float | None


def session_of(token: str, claims: dict) -> Session:
    """The session of a verified token with these claims."""
    sid, expires = claims.get("sid"), claims.get("exp")
    if isinstance(sid, str) and sid:
        key, issued_ms = sid, uuid7_ms(sid)
    else:
        key, issued_ms = "sha256:" + hashlib.sha256(token.encode()).hexdigest(), None
    if issued_ms is None:
        iat = claims.get("iat")
        # No issue time: older than any revocation, so revoke-sessions ends it too.
        issued_ms = int(iat * 1000) if isinstance(iat, int | float) else 0
    return Session(claims["sub"], key, issued_ms, float(expires) if expires is not None else None)


def uuid7_ms(text: str) -> int | None:
    """The time of a uuid7 (`ids.new_ordered_id`), in ms; None for anything else."""
    if len(text) != 36 or text[14] != "7" or not UUID_TEXT.fullmatch(text):
        return None
    return int(text[:8] + text[9:13], 16)


class Sessions:
    """The revocations this process knows of; `ended(session)` is the check of every request."""

    def __init__(self):
        self._ended: dict[str, int | None] = {}  # session key -> its token's expiry (ms)
        self._ended_before: dict[str, int] = {}  # user id -> sessions issued up to here ended
        self._read_up_to = 0  # the revocations' seq read from the database so far
        self._swept_at = time.monotonic()
        self._failing = False

    def ended(self, session: Session) -> bool:
        if session.key in self._ended:
            return True
        before = self._ended_before.get(session.user_id)
        return before is not None and session.issued_ms <= before

    async def end(self, store: Store, session: Session, now: int) -> None:
        """End `session` (a logout): recorded, and refused by this process from now on."""
        expires_ms = int(session.expires * 1000) if session.expires is not None else None
        if expires_ms is not None and expires_ms <= now:
            return  # its token is refused anyway
        self._apply(await store.end_session(session.user_id, session.key, expires_ms, now))

    async def refresh(self, store: Store) -> None:
        """Read the revocations recorded since the last read (by any process)."""
        for revocation in await store.revocations_after(self._read_up_to):
            self._apply(revocation)
            self._read_up_to = revocation.seq
        if time.monotonic() - self._swept_at >= SWEEP_EVERY_S:
            self._sweep(int(time.time() * 1000))

    async def watch(self, store: Store, every_s: float = POLL_S) -> None:
        """Refresh every `every_s` seconds until cancelled. While the database does not answer,
        what is known stays in force, and the log says so once (and again when it answers)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh(store)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    log.warning("cannot read ended sessions (%s); still refusing the ones known",
                                type(exc).__name__)
                self._failing = True
                continue
            if self._failing:
                log.info("reading ended sessions again")
            self._failing = False

    def _apply(self, revocation: Revocation) -> None:
        # Revocations of this process come back with the next refresh; applying twice is harmless.
        if revocation.session_key is not None:
            self._ended[revocation.session_key] = revocation.expires_at
        elif revocation.created_at > self._ended_before.get(revocation.user_id, -1):
            self._ended_before[revocation.user_id] = revocation.created_at

    def _sweep(self, now: int) -> None:
        self._swept_at = time.monotonic()
        self._ended = {key: expires for key, expires in self._ended.items()
                       if expires is None or expires > now}
