"""The seam between the HTTP/2 core and a provider (APNs, FCM): what goes in, what comes out,
and the two hooks a provider plugs in.

- `Request`: a request as ready HPACK pieces and a body, built by the provider.
- `Exchange`: one request in a pool and, once answered, the generic response: `status`,
  `headers` (as decoded, a list of (name, value) bytes pairs) and `body`, plus the bookkeeping
  a provider's rules read (`attempts`, `retries`, `renewed`, `generation`).
- `Failure`: why an exchange ended without an HTTP answer.
- `Retry`: what a provider's rules return to have a request sent again.
- `Authorization` (a protocol): the per-request `authorization` value and its renewal.
- `Judge` (a protocol): the provider's result layer, turning an answer or a failure into the
  provider's own result, or a `Retry`.

Must not do I/O or know any provider's paths, headers or reasons.
"""

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Request:
    """What a connection needs to put one request on a stream, as pre-encoded HPACK fields
    (`hpack_encoder`): `method` (`:method` and `:scheme`, e.g. `hpack_encoder.POST`), `path`
    (`path_field(b"/v1/...")`), `fields` (every other header but `:authority` and
    `authorization`, which the connection adds; b"" for none) and the `body`.

    A request is never changed by the core and may be sent again as it is (retries)."""

    __slots__ = ("body", "fields", "method", "path")

    def __init__(self, method: bytes, path: bytes, fields: bytes, body: bytes):
        self.method = method
        self.path = path
        self.fields = fields
        self.body = body


class Exchange:
    """One request in a pool, through all its attempts. The connection fills in the answer
    (`status`, `headers`, `chunks`) and the `generation` of the authorization it went out
    with; the pool counts `attempts` (requests that reached the wire and were answered, lost,
    reset or timed out), `retries` (delayed sends again) and `renewed` (the authorization was
    renewed for it once), and marks `again` an attempt that is a send again (it goes ahead of
    first sends, in the pool's queue and in a connection's wait for window). `live`, when
    given, is asked before every attempt goes on the wire: once it says False the exchange
    ends `UNSENT` instead (its sender no longer wants it sent)."""

    __slots__ = ("again", "attempts", "chunks", "conn", "deadline", "fut", "generation",
                 "headers", "live", "renewed", "request", "retries", "status", "waited")

    def __init__(self, request: Request, deadline: float,
                 live: Callable[[], bool] | None = None):
        self.request = request
        self.deadline = deadline
        self.live = live
        self.attempts = self.retries = self.waited = 0
        self.renewed = self.again = False
        self.conn = None
        # Its first attempt's answer, none yet (the pool resets these for every attempt
        # again; the first costs no call).
        self.status, self.headers, self.chunks, self.generation = 0, (), [], 0

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case) in the answer, if any."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Failure(enum.Enum):
    """Why an exchange ended without an HTTP answer."""

    REFUSED = "refused"  # the peer did not process it: the pool sends it again, judges never see it
    LOST = "lost"  # the connection died while it was in flight: it may have been processed
    RESET = "reset"  # the peer reset the stream with another error code than REFUSED_STREAM
    TIMEOUT = "timeout"  # on the wire, unanswered at its deadline (this side reset it)
    UNSENT = "unsent"  # its deadline passed before a stream was free; never on the wire
    CONNECT_FAILED = "connect_failed"  # as UNSENT, while connecting to the host was failing
    CLOSED = "closed"  # the pool was closed


class Retry:
    """A judge's decision to send a request again: after `delay_s` (0: at once; the pool
    prefers another connection than the last attempt's for any retry), or, with
    `renew`, once the authorization hook has renewed the credential it went out with (no
    delay, no retry counted). `result` is the answer if the deadline would pass first.
    The pool tells decisions from results by `type(d) is Retry`: do not subclass it. A judge
    must not answer `Failure.CLOSED` or `TIMEOUT` with a Retry."""

    __slots__ = ("delay_s", "renew", "result")

    def __init__(self, delay_s: float, result: Any, renew: bool = False):
        self.delay_s = delay_s
        self.result = result
        self.renew = renew


RENEW = Retry(0.0, None, renew=True)


class Authorization(Protocol):
    """The per-request `authorization` header of one credential (APNs: `token.ProviderToken`,
    FCM: an OAuth2 access token)."""

    def current(self) -> tuple[int, bytes]:
        """(generation, the whole header value, e.g. b"Bearer ya29..."): called as each stream
        opens, so it must be cheap and must not wait; a new generation whenever the value
        changes (the connection re-encodes the field only then)."""

    def expired(self, generation: int) -> Awaitable | None:
        """The peer refused credential `generation` (a judge returned `RENEW`). Renew it once
        however many requests report the same generation; return None when `current()`
        already gives the new value, or an awaitable that ends when it does (an OAuth2
        refresh): the pool waits for it, up to the request's deadline, before sending again."""


class Judge(Protocol):
    """A provider's result layer: the provider's result for an exchange, or a `Retry`.

    Called from the event loop as an attempt ends; must not block. `answered` gets every
    HTTP answer (any status), `failed` every `Failure` but REFUSED."""

    def answered(self, exchange: Exchange) -> Any:
        ...

    def failed(self, exchange: Exchange, failure: Failure) -> Any:
        ...
