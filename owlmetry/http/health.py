"""Health that tells the truth: `GET /healthz`, and 503 + Retry-After whenever the database is away.

/healthz is 200 only when the database took a write just now (the store's `probe_write`: on
SQLite, also that the path still names the file the server opened). A probe runs at most once a
second, whoever polls and however often; what it found is the answer until then. A probe that
takes longer than `PROBE_TIMEOUT_S` is an unavailable database too.

`database_unavailable`, a middleware, answers every request that met the store's
`DatabaseUnavailable` with the same 503 and Retry-After, and logs nothing: the engine has said
it, once per kind of failure (owlmetry/store/availability.py). A probe that fails otherwise (no
answer in time, a store already closed) is logged here, once, and so is its end. Must not
touch SQL.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from owlmetry.http.context import STORE
from owlmetry.http.errors import error_response, json_response
from owlmetry.store import DatabaseUnavailable, Store

log = logging.getLogger("owlmetry.health")

UNAVAILABLE = "Database unavailable"
RETRY_AFTER_S = 5
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    ok: bool
    at: float  # monotonic


class HealthCheck:
    """The latest probe's finding, probing again once it is `every_s` old; concurrent checks
    share one probe."""

    def __init__(self, every_s: float = PROBE_EVERY_S, timeout_s: float = PROBE_TIMEOUT_S,
                 clock=time.monotonic):
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._finding: Finding | None = None
        self._probe: asyncio.Task | None = None
        self._probe_started = 0.0
        self._said: str | None = None  # the failure this check logged and has not seen end

    async def healthy(self, store: Store) -> bool:
        now = self._clock()
        if self._finding is not None and now - self._finding.at < self.every_s:
            return self._finding.ok
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run(store), name="health probe")
            self._probe_started = now
        try:
            # Shielded: a poller that stops waiting leaves the probe to finish for the next.
            async with asyncio.timeout(self._probe_started + self.timeout_s - now):
                return await asyncio.shield(self._probe)
        except TimeoutError:
            self._say(f"the database did not take a write within {self.timeout_s:g} s")
            return False

    async def _run(self, store: Store) -> bool:
        try:
            await store.probe_write()
            ok = True
            if self._said is not None:
                log.warning("health: the database takes writes again")
                self._said = None
        except DatabaseUnavailable:
            ok = False  # the engine said it
        except Exception as exc:  # noqa: BLE001 -- any failure is "unhealthy"
            ok = False
            self._say(f"the health probe failed: {str(exc) or type(exc).__name__}")
        self._finding = Finding(ok, self._clock())
        return ok

    def _say(self, failure: str) -> None:
        if self._said is None:
            log.error("health: %s; /healthz answers 503", failure)
            self._said = failure


HEALTH = web.AppKey("health", HealthCheck)


def unavailable_response() -> web.Response:
    return error_response(503, UNAVAILABLE, {"Retry-After": str(RETRY_AFTER_S)})


async def healthz(request: web.Request) -> web.Response:
    if await request.app[HEALTH].healthy(request.app[STORE]):
        return json_response({"status": "ok"})
    return unavailable_response()


@web.middleware
async def database_unavailable(request: web.Request, handler):
    try:
        return await handler(request)
    except DatabaseUnavailable:
        return unavailable_response()
