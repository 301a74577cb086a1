"""What a request handler can reach: the application's shared objects and the request's caller.

Owns the typed application keys; the objects themselves are made in `app.py`.
"""

from collections.abc import Callable

from aiohttp import web

from owlmetry.config import Config
from owlmetry.credentials import UserTokens
from owlmetry.http.auth import Caller
from owlmetry.login_codes import CodeHasher
from owlmetry.login_mail import LoginMailWorker
from owlmetry.mail import Mailer
from owlmetry.notify.dispatcher import Dispatcher
from owlmetry.sessions import Sessions
from owlmetry.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", UserTokens)
SESSIONS = web.AppKey("sessions", Sessions)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
# Milliseconds since the epoch, as the store takes `now`; tests pass one they can move.
CLOCK = web.AppKey("clock", Callable[[], int])
MAILER = web.AppKey("mailer", Mailer)
CODE_HASHER = web.AppKey("code_hasher", CodeHasher)
LOGIN_MAIL = web.AppKey("login_mail", LoginMailWorker)
# The authenticated `auth.Caller` of a request to a route marked with `auth.callers(...)`.
CALLER = web.RequestKey("caller", Caller)
