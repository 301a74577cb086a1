"""The aiohttp application: routes, middleware, and the lifetime of what they share.

`create_app(config)` opens the store (and migrates it) when the app starts and closes it when
the app stops, through `cleanup_ctx`, so the same object serves `owlmetry serve` and the tests.
The middleware, outermost first: JSON errors, then authentication of every route whose handler
is marked with `auth.callers(...)` (a route without the mark, like /healthz, is public).
"""

import logging

from aiohttp import web

from owlmetry.config import Config
from owlmetry.http import devices
from owlmetry.http.auth import UserTokens, admit, identify, jwt_secret
from owlmetry.http.context import CALLER, CONFIG, STORE, TOKENS
from owlmetry.http.errors import error_response, json_errors, json_response
from owlmetry.store import open_store

MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger("owlmetry")


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except Exception:
        log.exception("health check: the database does not answer")
        return error_response(503, "Database unavailable")
    return json_response({"status": "ok"})


@web.middleware
async def authenticate(request: web.Request, handler):
    allowed = getattr(request.match_info.handler, "allowed_callers", None)
    if allowed is not None:
        app = request.app
        request[CALLER] = admit(await identify(request, app[TOKENS], app[STORE]), allowed)
    return await handler(request)


async def store_lifetime(app: web.Application):
    store = await open_store(app[CONFIG].database_url)
    try:
        await store.migrate()
        app[STORE] = store
        app[TOKENS] = UserTokens(await jwt_secret(store, app[CONFIG].jwt_secret))
        yield
    finally:
        await store.close()


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors, authenticate])
    app[CONFIG] = config
    app.cleanup_ctx.append(store_lifetime)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_routes(devices.routes)
    return app
