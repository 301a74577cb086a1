"""Fixtures for the HTTP/2 core's tests: the real mock APNs over TLS, and a provider of the
tests' own on the core's generic seam (requests, an authorization hook, a judge), so that what
is tested is the core and not the APNs layer."""

import asyncio
import time
from dataclasses import dataclass

import jwt
import pytest

from owlmetry.h2client import (
    RENEW,
    Exchange,
    Failure,
    HostPool,
    PoolSettings,
    Request,
    Retry,
    hpack_encoder,
    ssl_context,
)
from tests.apns.identity import KEY_ID, TEAM_ID, TOPIC
from tests.apns.mock_fixtures import behaviour, mock  # noqa: F401  (fixtures)

FIELDS = (hpack_encoder.literal(b"apns-topic", TOPIC.encode())
          + hpack_encoder.literal(b"apns-push-type", b"alert"))
BODY = b'{"aps":{"alert":"hi"}}'


def token(i: int) -> str:
    return "c" + format(i, "x").rjust(63, "0")


def request(i: int, body: bytes = BODY) -> Request:
    path = hpack_encoder.path_field(b"/3/device/" + token(i).encode())
    return Request(hpack_encoder.POST, path, FIELDS, body)


class FixedAuthorization:
    """An authorization hook whose value never changes."""

    def __init__(self, value: bytes):
        self.value = value

    def current(self) -> tuple[int, bytes]:
        return 1, self.value

    def expired(self, generation: int) -> None:
        return None


class RefreshingBearer:
    """An authorization hook like an OAuth2 token's: a renewal takes a round trip
    (`refresh_s`), and everyone who reports the same generation waits for the same one."""

    def __init__(self, key_pem: bytes, refresh_s: float = 0.02):
        self._key = key_pem
        self._refresh_s = refresh_s
        self.generation = 0
        self.renewals = 0
        self.hang = False  # a renewal that never ends (a token endpoint that does not answer)
        self._value = b""
        self._renewal: asyncio.Future | None = None
        self._sign()

    def _sign(self) -> None:
        signed = jwt.encode({"iss": TEAM_ID, "iat": int(time.time())}, self._key,
                            algorithm="ES256", headers={"kid": KEY_ID})
        self._value = b"bearer " + signed.encode()
        self.generation += 1

    def current(self) -> tuple[int, bytes]:
        return self.generation, self._value

    def expired(self, generation: int) -> asyncio.Future:
        if generation == self.generation and self._renewal is None:
            loop = asyncio.get_running_loop()
            self._renewal = loop.create_future()
            self.renewals += 1
            if not self.hang:
                loop.call_later(self._refresh_s, self._renewed)
        return self._renewal or _done()

    def _renewed(self) -> None:
        self._sign()
        renewal, self._renewal = self._renewal, None
        renewal.set_result(None)


def _done() -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


@dataclass(frozen=True)
class Outcome:
    """What the tests' judge makes of an exchange."""

    status: int = 0
    body: bytes = b""
    header: bytes | None = None  # the answer's apns-id
    failure: Failure | None = None
    attempts: int = 0
    retries: int = 0
    generation: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200


class SimpleJudge:
    """Sends 429, 5xx, lost and reset exchanges again after `delay_s`, up to `max_retries`
    times; renews the authorization once on a 403 ExpiredProviderToken; the rest is final."""

    def __init__(self, max_retries: int = 8, delay_s: float = 0.001):
        self.max_retries = max_retries
        self.delay_s = delay_s
        self.answers: list[int] = []
        self.failures: list[Failure] = []

    def answered(self, x: Exchange):
        self.answers.append(x.status)
        outcome = Outcome(x.status, x.body, x.header(b"apns-id"), None, x.attempts, x.retries,
                          x.generation)
        if x.status == 403 and b"ExpiredProviderToken" in x.body and not x.renewed:
            return RENEW
        if x.status == 429 or x.status >= 500:
            return self._later(x, outcome)
        return outcome

    def failed(self, x: Exchange, failure: Failure):
        self.failures.append(failure)
        outcome = Outcome(failure=failure, attempts=x.attempts, retries=x.retries)
        if failure in (Failure.LOST, Failure.RESET):
            return self._later(x, outcome)
        return outcome

    def _later(self, x: Exchange, outcome: Outcome):
        return outcome if x.retries >= self.max_retries else Retry(self.delay_s, outcome)


class Pool:
    """A HostPool and what it was made with; `send` through `send` or `send_soon`."""

    def __init__(self, pool: HostPool, judge: SimpleJudge, authorization, soon: bool):
        self.pool = pool
        self.judge = judge
        self.authorization = authorization
        self._soon = soon

    async def send(self, req: Request):
        if not self._soon:
            return await self.pool.send(req)
        done = asyncio.get_running_loop().create_future()
        self.pool.send_soon(req, done.set_result)
        return await done

    async def send_many(self, requests) -> list:
        return await asyncio.gather(*(self.send(r) for r in requests))


@pytest.fixture(params=["send", "send_soon"])
async def make_pool(request, mock, tls_files, auth_key):
    """`make_pool(judge=..., authorization=..., **PoolSettings fields)` -> a `Pool` on the
    mock; closed after the test. Every test runs with `send` and with `send_soon`."""
    pools = []

    def make(judge=None, authorization=None, port=None, **settings) -> Pool:
        settings.setdefault("timeout_s", 10.0)
        judge = judge or SimpleJudge()
        authorization = authorization or RefreshingBearer(auth_key)
        pool = HostPool("127.0.0.1", port or mock.port, ssl_context(tls_files[0]), authorization,
                        judge, PoolSettings(**settings), label="test")
        pools.append(pool)
        return Pool(pool, judge, authorization, request.param == "send_soon")

    yield make
    await asyncio.gather(*(pool.close() for pool in pools))
