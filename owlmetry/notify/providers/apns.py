"""The APNs provider: iOS devices, through the project's HTTP/2 pool (`owlmetry.apns`), each to
its environment's host.

Owns the payload of the contract (badge = the recipient's unread count), how a notification's
push options (`owlmetry.push_options`) map onto the `aps` keys and the apns-* headers, and how
a `PushResult` maps onto an answer. Without the APNs identity in the configuration the provider is
unavailable and names the missing variables. What an APNs token looks like is
`owlmetry.device_tokens`' rule.
"""

import asyncio
import functools

import orjson

from owlmetry.apns import APNsClient
from owlmetry.apns.push_result import PushResult, ResultKind
from owlmetry.apns.wire import payload_limit
from owlmetry.config import Config
from owlmetry.notify.channels.base import Answer, ConnectionStats, Sender
from owlmetry.notify.providers.expiry import expired_answer
from owlmetry.push_options import PushOptions
from owlmetry.store import Claim, NotificationContent, PushOutcome, PushTarget

# The largest badge a payload is checked with before it is accepted, so that any real unread
# count fits too.
LARGEST_BADGE = 10**9


RESERVED_KEYS = ("aps", "link", "type", "notification_id")


def apns_payload(content: NotificationContent, notification_id: str, unread: int) -> bytes:
    return PayloadTemplate(content).render(notification_id, unread)


def aps_dictionary(content: NotificationContent) -> dict:
    """`aps` with a badge of 0 (last, where the recipient's count goes) unless `badge` is none:
    `{"alert": {"title", "body"}, "sound": "default", "badge": n}` without options; a
    background push is `{"content-available": 1}` alone."""
    options = content.options
    if options.background:
        return {"content-available": 1}
    alert = {"title": content.title}
    if content.body is not None:
        alert["body"] = content.body
    aps = {"alert": alert}
    if options.sound is not None:
        aps["sound"] = options.sound
    for key, value in (("thread-id", options.thread_id), ("category", options.category),
                       ("mutable-content", 1 if options.mutable_content else None),
                       ("interruption-level", options.interruption_level),
                       ("relevance-score", options.relevance_score)):
        if value is not None:
            aps[key] = value
    if options.badge == "unread":
        aps["badge"] = 0
    return aps


class PayloadTemplate:
    """The contract's payload for one notification, made once and finished per recipient:
    `{<data keys>, "aps": {...}, "link", "type", "notification_id"}` (`aps_dictionary`) -- the
    data keys can never replace the contract's. `headers` are the push's apns-* options."""

    __slots__ = ("_badge", "_head", "_tail", "headers")

    def __init__(self, content: NotificationContent):
        document = {key: value for key, value in (content.data or {}).items()
                    if key not in RESERVED_KEYS}
        document["aps"] = aps_dictionary(content)
        head = orjson.dumps(document)
        self._badge = "badge" in document["aps"]
        if self._badge:
            if not head.endswith(b'"badge":0}}'):
                raise ValueError("unexpected payload encoding")
            self._head = head[:-3]  # ... "badge":
        else:
            self._head = head[:-2]
        rest = {"link": content.link} if content.link is not None else {}
        rest["type"] = content.type
        self._tail = b"}," + orjson.dumps(rest)[1:-1] + b',"notification_id":'
        self.headers = apns_headers(content.options)

    def render(self, notification_id: str, unread: int) -> bytes:
        badge = b"%d" % unread if self._badge else b""
        return b"%s%s%s%s}" % (self._head, badge, self._tail, orjson.dumps(notification_id))


def apns_headers(options: PushOptions) -> dict:
    """`APNsClient.send`'s header arguments: apns-push-type, -priority, -expiration and
    -collapse-id (None: the header is not sent)."""
    return {"push_type": options.push_type, "priority": options.priority,
            "expiration": options.expiration, "collapse_id": options.collapse_id}


class Push:
    """One claim's push: its body and its headers."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes, headers: dict):
        self.body, self.headers = body, headers


DELIVERED = PushOutcome.DELIVERED
DELIVERED_KIND = ResultKind.DELIVERED


def answer_for(result: PushResult) -> Answer:
    # Every answer carries its apns-id (the producer's status shows it).
    if result.kind is DELIVERED_KIND:  # `result.ok` without the property's call
        return Answer(DELIVERED, 200, apns_id=result.apns_id)
    if result.token_invalid:
        since = result.timestamp_ms if result.kind is ResultKind.UNREGISTERED else None
        return Answer(PushOutcome.REMOVED, result.status, result.reason, since,
                      apns_id=result.apns_id, provider_at=since)
    if result.retry_later:
        return Answer(PushOutcome.RETRY, result.status, result.reason, apns_id=result.apns_id)
    return Answer(PushOutcome.FAILED, result.status, result.reason, apns_id=result.apns_id)


def _answer_to(on_answer, result: PushResult) -> None:
    on_answer(answer_for(result))


class APNs(Sender):

    def __init__(self, client: APNsClient | None, unavailable: str | None = None):
        self._client = client
        self.unavailable = unavailable
        self._content: NotificationContent | None = None
        self._template: PayloadTemplate | None = None

    @staticmethod
    def check_content(content: NotificationContent, config: Config | None = None) -> None:
        size = len(apns_payload(content, "00000000-0000-0000-0000-000000000000", LARGEST_BADGE))
        limit = payload_limit(content.options.push_type)
        if size > limit:
            raise ValueError(f"the notification makes an APNs payload of {size} bytes; "
                             f"the limit is {limit}")

    @classmethod
    def from_config(cls, config: Config) -> "APNs":
        if config.apns is None:
            return cls(None, f"APNs is not configured: {', '.join(config.apns_missing)} unset")
        identity = config.apns
        return cls(APNsClient(
            identity.key_id, identity.team_id, identity.key_pem, identity.bundle_id,
            production_url=config.apns_production_url, sandbox_url=config.apns_sandbox_url,
            ca_file=config.apns_ca_file, connections=config.apns_connections))

    def prepare(self, claim: Claim) -> Push | Answer:
        # Claims of one fan-out share their content object: its template is made once.
        if claim.content is not self._content:
            self._content, self._template = claim.content, PayloadTemplate(claim.content)
        expired = expired_answer(claim.content.options)
        if expired is not None:
            return expired
        return Push(self._template.render(claim.notification_id, claim.unread),
                    self._template.headers)

    async def send(self, prepared: Push | Answer, target: PushTarget) -> Answer:
        if isinstance(prepared, Answer):
            return prepared
        return answer_for(await self._client.send(target.token, prepared.body,
                                                  target.environment, **prepared.headers))

    def send_soon(self, prepared: Push | Answer, target: PushTarget, on_answer,
                  live=None) -> None:
        if isinstance(prepared, Answer):
            asyncio.get_running_loop().call_soon(on_answer, prepared)
            return
        headers = prepared.headers  # passed one by one: `**` builds a dict per push
        self._client.send_soon(target.token, prepared.body, target.environment,
                               functools.partial(_answer_to, on_answer),
                               push_type=headers["push_type"], priority=headers["priority"],
                               expiration=headers["expiration"],
                               collapse_id=headers["collapse_id"], live=live)

    def connection_stats(self) -> dict[str, ConnectionStats]:
        if self._client is None:
            return {}
        return {environment: ConnectionStats(stats.connections, stats.streams, stats.queued)
                for environment, stats in self._client.pool_stats().items()}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

