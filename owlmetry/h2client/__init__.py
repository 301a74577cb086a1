"""The HTTP/2 client core that the push providers share (APNs in `owlmetry.apns`, FCM in
`owlmetry.fcm`): long-lived TLS connections to one host, many streams each, a few connections
per host, and a provider's small request and result layer on top.

What the core guarantees, whatever the provider:

- stream limits follow the peer's SETTINGS_MAX_CONCURRENT_STREAMS as it changes, capped by
  `PoolSettings.max_streams_per_connection`; requests beyond them wait in one FIFO;
- a stream the peer refused (REFUSED_STREAM, or above a GOAWAY's last stream id) was never
  processed and goes out again at once, costing no attempt; streams below the last id finish;
- an idle connection is PINGed before it is trusted again, and dropped if the PING goes
  unanswered;
- nothing is lost: every request ends with the judge's result, at its deadline at the latest;
  nothing goes out again unless refused or the judge asks (`Retry`: a 429, a 5xx), so nothing
  is processed twice except a stream in flight on a dropped connection (`Failure.LOST`) that
  the judge sends again;
- at most `max_connections` connections per host, opened on demand, with backoff between
  failed connects;
- `close()` ends everything queued or in flight with `Failure.CLOSED` and leaves no socket or
  task behind.

Modules: `exchange.py` the seam (below); `hpack_encoder.py` requests as ready HPACK bytes;
`hpack_decoder.py` answers; `h2_seam.py` the only user of h2's internals; `connection.py` one
connection; `pool.py` the connections to one host (`HostPool`, `PoolSettings`, `PoolStats`).
Must not know any provider's paths, headers, statuses or bodies.

The seam a provider uses (APNs: `apns/wire.py`, `apns/answers.py`, `apns/token.py`,
`apns/client.py`):

1. **Request**: `Request(method, path, fields, body)`, pre-encoded with `hpack_encoder`:
   `method` is `hpack_encoder.POST` (or `GET`), `path` is `path_field(b"/...")`, `fields` the
   other headers as `literal(name, value)` joined (encode the constant ones once, not per
   request), `body` bytes. The connection adds `:authority` and `authorization`.
2. **Authorization** hook (`exchange.Authorization`): `current() -> (generation, value)`,
   called as each stream opens (cheap, never waits), and `expired(generation)`, called when
   the judge says the peer refused that credential: renew once per generation, return None
   (renewed already) or a future the pool waits on (up to the request's deadline) before
   sending again.
3. **Judge** (`exchange.Judge`): `answered(exchange)` for every HTTP answer (`status`,
   `headers` as decoded, `body`, `header(name)`) and `failed(exchange, failure)` for every
   `Failure` but REFUSED; each returns the provider's result, or `Retry(delay_s, result)`
   to send again after `delay_s` (`result` if the deadline would pass first; 0: at once, on
   another connection than the last attempt's when one has room), or `RENEW` to renew the
   credential once and send again. `exchange.attempts`, `.retries`, `.waited` (the retries
   that had a delay), `.renewed` let the judge bound its retries and grow its delays.
4. **Pool**: `HostPool(host, port, ssl_context(ca_file), authorization, judge,
   PoolSettings(...), label=...)`; `await pool.send(request)` or
   `pool.send_soon(request, on_result)` (a fan-out: no task per request that the judge
   settles at the first answer); `stats()`, `connections`, `close()`.

FCM on this seam (HTTP v1): one pool for `fcm.googleapis.com:443` (or `FCM_URL`); the path
`/v1/projects/{project_id}/messages:send` and the field `content-type: application/json` are
encoded once per project, so a request is `Request(POST, path, fields, json_body)`. The
authorization hook holds the OAuth2 access token: `current()` returns (generation,
b"Bearer <token>") and starts a refresh in the background when the token nears expiry while
still returning the valid one; on a 401 the judge returns `RENEW`, and `expired(generation)`
starts one refresh for that generation (however many answers report it) and returns its
future. Before the first token exists there is nothing valid to send: the provider layer
awaits its token before calling `send`/`send_soon`, the core never waits before a first
attempt. The judge parses the JSON answer (`exchange.body`; `exchange.header(b"retry-after")`
for 429s) into the provider's own result.
"""

from .connection import RECEIVE_WINDOW, ssl_context
from .exchange import RENEW, Authorization, Exchange, Failure, Judge, Request, Retry
from .pool import HostPool, PoolSettings, PoolStats

__all__ = ["RECEIVE_WINDOW", "RENEW", "Authorization", "Exchange", "Failure", "HostPool", "Judge",
           "PoolSettings", "PoolStats", "Request", "Retry", "ssl_context"]
