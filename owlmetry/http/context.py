"""What a request handler can reach: the application's shared objects and the request's caller.

Owns the typed application keys; the objects themselves are made in `app.py`.
"""

from aiohttp import web

from owlmetry.config import Config
from owlmetry.http.auth import Caller, UserTokens
from owlmetry.notify.dispatcher import Dispatcher
from owlmetry.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", UserTokens)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
# The authenticated `auth.Caller` of a request to a route marked with `auth.callers(...)`.
CALLER = web.RequestKey("caller", Caller)
