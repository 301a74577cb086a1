"""What a request handler can reach: the application's shared objects and the request's caller.

Owns the typed application keys; the objects themselves are made in `app.py`.
"""

from aiohttp import web

from owlmetry.config import Config
from owlmetry.http.auth import Caller, UserTokens, identify
from owlmetry.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", UserTokens)


async def caller_of(request: web.Request) -> Caller:
    app = request.app
    return await identify(request, app[TOKENS], app[STORE])
