"""The vacuum job inside `serve`: every `EVERY_S`, vacuum the tables whose dead rows outgrew
what autovacuum leaves behind (PostgreSQL; on SQLite the store does nothing).

Owns the schedule and what is logged. Must hold no SQL, nor the thresholds
(`owlmetry.store.vacuum` has both, and says why the job exists).
"""

import asyncio
import contextlib
import logging

from owlmetry.store import DatabaseUnavailable, Store

log = logging.getLogger("owlmetry.vacuum")

# A look costs one read of the statistics; at 2,800 evictions a second a table gains its
# threshold's dead rows (10,000 devices: 2,000) in under a second.
EVERY_S = 1.0


class VacuumJob:
    """`start()`, then `await stop()` on shutdown, which cancels a VACUUM under way: PostgreSQL
    stops one safely, and a table's next look starts it again."""

    def __init__(self, store: Store, every_s: float = EVERY_S):
        self.store = store
        self.every_s = every_s
        self._task: asyncio.Task | None = None
        self._failing = False  # said once, until a look succeeds again

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vacuum")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                vacuumed = await self.store.vacuum_overgrown()
            except DatabaseUnavailable:
                continue  # the store's availability log says the outage, once
            except Exception:
                if not self._failing:
                    log.exception("vacuum: the look at dead rows failed; trying again every "
                                  "%g s, said once until it works", self.every_s)
                self._failing = True
                continue
            self._failing = False
            if vacuumed:
                log.debug("vacuum: %s", ", ".join(vacuumed))
