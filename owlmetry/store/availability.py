"""Whether the database takes work, as the engine's statements find it, and the log that says so.

An engine hands every `DatabaseUnavailable` it raises to `Availability.failed` and reports each
write that succeeds; the log gets one line when the database stops taking work (one per kind of
failure: "disk full", "unreachable", ...) and one when a write succeeds again. A kind that
keeps coming and going is said at most once per `QUIET_S`, so a disk that is almost full cannot
flood the log. Must not retry, wait or decide what a caller answers.
"""

import logging
import time

from owlmetry.store.rows import DatabaseUnavailable

log = logging.getLogger("owlmetry.store")

# A kind already said within this long is not said again (nor its recovery).
QUIET_S = 300.0


class Availability:
    def __init__(self, clock=time.monotonic):
        self.down: DatabaseUnavailable | None = None  # the latest failure, until a write succeeds
        self._clock = clock
        self._said: dict[str, float] = {}  # kind -> when it was last logged
        self._outage_said = False  # this outage's failure was logged: so is its end

    def failed(self, exc: DatabaseUnavailable) -> None:
        now = self._clock()
        said = self._said.get(exc.kind)
        if (self.down is None or self.down.kind != exc.kind) and (
                said is None or now - said >= QUIET_S):
            self._said[exc.kind] = now
            self._outage_said = True
            log.error("the database is unavailable (%s): %s; answering 503 until it is back",
                      exc.kind, exc.detail)
        self.down = exc

    def succeeded(self) -> None:
        """A write went through: the outage, if any, is over."""
        if self.down is None:
            return
        kind, self.down = self.down.kind, None
        if self._outage_said:
            self._outage_said = False
            log.warning("the database is available again (after: %s)", kind)
