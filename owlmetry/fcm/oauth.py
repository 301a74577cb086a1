"""OAuth2 access tokens for FCM from a service account (Google's JWT-bearer grant, RFC 7523).

Owns the RS256 assertion (`iss` the account's email, the firebase.messaging scope, `aud` its
`token_uri`, an hour at most), the exchange at `token_uri`, the cached token, its refresh ahead
of expiry by one request however many senders wait (single flight), and `invalidate` after a
401. The exchange goes through a `Transport` (aiohttp by default: a rare request, HTTP/1.1 is
fine). Must not send messages or read settings; never logs a token or the key.
"""

import asyncio
import logging
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable

import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from owlmetry.backoff import backoff

from .service_account import ServiceAccount

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600  # Google refuses assertions valid for longer than an hour
# A token this close to its expiry is renewed in the background while it is still handed out;
# one this close is not handed out at all (a send may take seconds, clocks drift).
REFRESH_AHEAD_S = 300.0
EXPIRY_MARGIN_S = 30.0

# (url, form body, headers) -> (HTTP status, body); OSError when the endpoint cannot be reached.
Transport = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]


class TokenError(Exception):
    """No access token could be had. `transient`: the token endpoint was unreachable or
    answered 5xx/429 (try later); otherwise it refused the service account (configuration)."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


def assertion(account: ServiceAccount, now: float, key=None) -> str:
    """The signed JWT that asks `account.token_uri` for an FCM access token; `key`, the
    account's key already loaded, saves reading the PEM again."""
    issued = int(now)
    claims = {"iss": account.client_email, "scope": SCOPE, "aud": account.token_uri,
              "iat": issued, "exp": issued + ASSERTION_LIFETIME_S}
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return jwt.encode(claims, key or account.private_key, algorithm="RS256", headers=headers)


class AiohttpTransport:
    """POSTs with aiohttp's client; `ca_file` adds a CA to trust (FCM_CA_FILE: a local mock)."""

    def __init__(self, ca_file: str | None = None, timeout_s: float = 30.0):
        self._ca_file = ca_file
        self._timeout_s = timeout_s
        self._session = None

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        # Imported here: the settings (so every CLI command) import this package, and only a
        # sending server needs aiohttp's client.
        import aiohttp

        if self._session is None:
            context = ssl.create_default_context()
            if self._ca_file:
                context.load_verify_locations(self._ca_file)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read()
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AccessTokens:
    """The current access token for one service account.

    `await current()` answers at once while the cached token is fresh. Inside the last
    REFRESH_AHEAD_S of its life it still answers at once and starts one refresh in the
    background; once it is within EXPIRY_MARGIN_S of expiry (or invalidated), callers wait for
    that one refresh. Either way, one request to the token endpoint at a time.
    """

    def __init__(self, account: ServiceAccount, transport: Transport | None = None, *,
                 ca_file: str | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 refresh_ahead_s: float = REFRESH_AHEAD_S, expiry_margin_s: float = EXPIRY_MARGIN_S):
        self._account = account
        # Loaded (and checked, a tenth of a second) once, not at every refresh.
        self._key = serialization.load_pem_private_key(account.private_key.encode(), None)
        self._own_transport = transport is None
        self._transport = transport or AiohttpTransport(ca_file)
        self._clock = clock
        self._wall_clock = wall_clock  # the assertion's iat/exp are wall-clock times
        self._ahead = refresh_ahead_s
        self._margin = expiry_margin_s
        self._token: str | None = None
        self._expires_at = 0.0  # on `clock`
        self._refresh: asyncio.Task | None = None
        self._failures = 0
        self._next_background = 0.0  # after a failed refresh, no other before this
        self._last_error: TokenError | None = None
        self.requests = 0  # exchanges started (for monitoring and tests)

    @property
    def refreshing(self) -> asyncio.Task | None:
        """The refresh under way, if any."""
        return self._refresh

    def cached(self) -> str | None:
        """The token, if it may be used now without waiting (a connection writing a request
        cannot await); None means `await current()`. Starts the refresh ahead of expiry."""
        now = self._clock()
        if self._token is None or now >= self._expires_at - self._margin:
            return None
        if now >= self._expires_at - self._ahead and now >= self._next_background:
            self._start_refresh()
        return self._token

    async def current(self) -> str:
        """A token to send with (`authorization: Bearer <token>`); TokenError if none can be had."""
        token = self.cached()
        if token is not None:
            return token
        now = self._clock()
        if self._last_error is not None and now < self._next_background and not self._refreshing():
            raise self._last_error  # the endpoint just failed: fail fast rather than hammer it
        # shield: a waiter that is cancelled must not cancel the refresh the others wait for.
        return await asyncio.shield(self._start_refresh())

    def invalidate(self, token: str) -> None:
        """FCM answered 401 to `token`: the next `current()` refreshes, unless the token has
        been replaced meanwhile (then the 401 was about an old token and changes nothing)."""
        if token == self._token:
            self._expires_at = 0.0

    async def close(self) -> None:
        if self._refreshing():
            self._refresh.cancel()
        if self._own_transport:
            await self._transport.close()

    def _refreshing(self) -> bool:
        return self._refresh is not None and not self._refresh.done()

    def _start_refresh(self) -> asyncio.Task:
        if not self._refreshing():
            self._refresh = asyncio.get_running_loop().create_task(self._exchange())
            self._refresh.add_done_callback(_consume)
        return self._refresh

    async def _exchange(self) -> str:
        self.requests += 1
        started = self._clock()
        form = urllib.parse.urlencode({"grant_type": GRANT_TYPE,
                                       "assertion": assertion(self._account, self._wall_clock(), self._key)})
        try:
            status, body = await self._transport(
                self._account.token_uri, form.encode(),
                {"content-type": "application/x-www-form-urlencoded"})
        except (TimeoutError, OSError) as exc:
            raise self._failed(f"cannot reach the token endpoint {self._account.token_uri}: "
                               f"{exc or type(exc).__name__}", True) from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        if status != 200:
            error = document.get("error_description") or document.get("error") or f"HTTP {status}"
            raise self._failed(
                f"the token endpoint refused service account {self._account.client_email} "
                f"(FCM_SERVICE_ACCOUNT): {status} {str(error)[:200]}",
                status == 429 or status >= 500)
        token, lifetime = document.get("access_token"), document.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, (int, float)):
            raise self._failed("the token endpoint answered 200 without access_token and "
                               "expires_in", True)
        # Counted from before the request: the token cannot outlive what Google promised.
        self._token, self._expires_at = token, started + lifetime
        self._failures, self._next_background, self._last_error = 0, 0.0, None
        return token

    def _failed(self, message: str, transient: bool) -> TokenError:
        # While the old token still works, background refreshes wait a little between failures
        # instead of one per send.
        self._next_background = self._clock() + backoff(1.0, self._failures, 60.0)
        self._failures += 1
        log.warning("fcm: access token refresh failed: %s", message)
        self._last_error = TokenError(message, transient)
        return self._last_error


def _consume(task: asyncio.Task) -> None:
    # A background refresh nobody awaited must not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
