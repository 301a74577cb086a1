"""The aiohttp application: routes, middleware, and the lifetime of what they share.

`create_app(config)` opens the store (and migrates it) and starts the notification dispatcher,
the release of scheduled sends, the retention's clean-up and the vacuum job when the app starts,
and stops them when it stops, through `cleanup_ctx`, so the same object serves `owlmetry serve`
and the tests.
The middleware, outermost first: the client's address and scheme from a trusted proxy's headers
(only when TRUSTED_PROXIES is set), request metrics (so errors count with their real status),
JSON errors, the cross-site request check (`csrf`), 503 for an unavailable database
(http/health.py), then authentication of every route whose handler is marked with
`auth.callers(...)` (a route without the mark, like /healthz and /metrics, is public).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import web

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.credentials import UserTokens, signing_secret
from owlmetry.http import devices, health, inbox, login, metrics, openapi, producer, scheduled
from owlmetry.http.auth import admit, identify
from owlmetry.http.context import (
    CALLER,
    CLOCK,
    CODE_HASHER,
    CONFIG,
    DISPATCHER,
    LOGIN_MAIL,
    MAILER,
    SESSIONS,
    STORE,
    TOKENS,
)
from owlmetry.http.csrf import same_origin_only
from owlmetry.http.errors import MAX_BODY_BYTES, json_errors
from owlmetry.http.forwarded import forwarded
from owlmetry.login_codes import CodeHasher
from owlmetry.login_mail import LoginMailWorker
from owlmetry.mail import Mailer
from owlmetry.notify.channels.base import Channel
from owlmetry.notify.dispatcher import dispatcher_for
from owlmetry.notify.releaser import Releaser
from owlmetry.retention import EVERY_S, RetentionJob
from owlmetry.sessions import Sessions
from owlmetry.store import open_store
from owlmetry.vacuuming import VacuumJob

log = logging.getLogger("owlmetry")


@web.middleware
async def authenticate(request: web.Request, handler):
    allowed = getattr(request.match_info.handler, "allowed_callers", None)
    if allowed is not None:
        app = request.app
        request[CALLER] = admit(await identify(request, app[TOKENS], app[STORE]), allowed)
    return await handler(request)


async def store_lifetime(app: web.Application):
    store = await open_store(app[CONFIG].database_url)  # refuses database files others can read
    try:
        secret = signing_secret(app[CONFIG])  # before the schema changes: none stops the start
        await store.migrate()
        store.limit_devices(app[CONFIG].max_devices_per_user)
        app[STORE] = store
        sessions = app[SESSIONS] = Sessions()
        await sessions.refresh(store)
        app[TOKENS] = UserTokens(secret, sessions)
        app[CODE_HASHER] = CodeHasher(secret)
        watching = asyncio.create_task(sessions.watch(store))
        for line in store.advice():
            log.info(line)
        try:
            yield
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    finally:
        await store.close()


def dispatcher_lifetime(channels: dict[str, Channel] | None):
    async def lifetime(app: web.Application):
        dispatcher = dispatcher_for(app[STORE], app[CONFIG], channels)
        app[DISPATCHER] = dispatcher
        dispatcher.start()
        yield
        await dispatcher.stop(grace_s=app[CONFIG].shutdown_grace_s)
    return lifetime


async def login_mail_lifetime(app: web.Application):
    worker = LoginMailWorker(app[STORE], app[MAILER], app[CODE_HASHER], app[CLOCK])
    app[LOGIN_MAIL] = worker
    worker.start()
    yield
    await worker.stop()


async def releaser_lifetime(app: web.Application):
    releaser = Releaser(app[STORE], app[DISPATCHER], lease_ms=app[CONFIG].notify_lease_s * 1000,
                        clock=app[CLOCK])
    releaser.start()
    yield
    await releaser.stop()


async def vacuum_lifetime(app: web.Application):
    job = VacuumJob(app[STORE])
    job.start()
    yield
    await job.stop()


def retention_lifetime(every_s: float):
    async def lifetime(app: web.Application):
        job = RetentionJob(app[STORE], app[CONFIG], app[CLOCK], every_s)
        job.start()
        yield
        await job.stop()
    return lifetime


async def announce_shutdown(app: web.Application) -> None:
    log.info("stopping: no longer accepting connections; finishing requests and pushes under "
             "way for up to %s s", app[CONFIG].shutdown_grace_s)


async def announce_mail(app: web.Application) -> None:
    app[MAILER].announce()


def create_app(config: Config, channels: dict[str, Channel] | None = None,
               clock: Callable[[], int] = now_ms,
               cleanup_every_s: float = EVERY_S) -> web.Application:
    """`channels` replaces the ones the configuration describes (tests use their own); `clock`
    is the time the login routes and the clean-up go by (tests move it); `cleanup_every_s`,
    how often the retention's clean-up runs (tests make it often)."""
    middlewares = [metrics.count_requests, json_errors, same_origin_only(config.allowed_origins),
                   health.database_unavailable, authenticate]
    if config.trusted_proxies:
        middlewares.insert(0, forwarded(config.trusted_proxies))  # outermost: it clones
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[health.HEALTH] = health.HealthCheck()
    app[MAILER] = Mailer(config.smtp, config.email_from)
    app.on_startup.append(announce_mail)
    app.cleanup_ctx.append(store_lifetime)
    app.cleanup_ctx.append(dispatcher_lifetime(channels))
    app.cleanup_ctx.append(releaser_lifetime)  # stops before the dispatcher it feeds
    app.cleanup_ctx.append(login_mail_lifetime)
    app.cleanup_ctx.append(retention_lifetime(cleanup_every_s))
    app.cleanup_ctx.append(vacuum_lifetime)
    app.on_shutdown.append(announce_shutdown)
    app.router.add_get("/healthz", health.healthz, allow_head=False)
    metrics.install(app)
    app.router.add_routes(devices.routes)
    app.router.add_routes(inbox.routes)
    app.router.add_routes(producer.routes)
    app.router.add_routes(scheduled.routes)
    app.router.add_routes(login.routes)
    app.router.add_routes(openapi.routes)
    return app
