"""The `ios_push` channel: APNs through the project's HTTP/2 pool (`owlmetry.apns`).

Owns the APNs device-token rule, the payload of the contract (badge = the recipient's unread
count) and how a `PushResult` maps onto an answer. Without the APNs identity in the
configuration the channel is unavailable and names the missing variables.
"""

import re

import orjson

from owlmetry.apns import APNsClient
from owlmetry.apns.request import payload_limit
from owlmetry.apns.results import Outcome, PushResult
from owlmetry.config import Config
from owlmetry.notify.channel import Answer, Channel
from owlmetry.store import Claim, NotificationContent, PushTarget

APNS_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2}){8,100}")
# The largest badge a payload is checked with before it is accepted, so that any real unread
# count fits too.
LARGEST_BADGE = 10**9


def apns_payload(content: NotificationContent, notification_id: str, unread: int) -> bytes:
    alert = {"title": content.title}
    if content.body is not None:
        alert["body"] = content.body
    # The producer's data keys go first so that they can never replace the contract's keys.
    document = dict(content.data or {})
    document["aps"] = {"alert": alert, "sound": "default", "badge": unread}
    if content.link is not None:
        document["link"] = content.link
    document["type"] = content.type
    document["notification_id"] = notification_id
    return orjson.dumps(document)


def answer_for(result: PushResult) -> Answer:
    if result.ok:
        return Answer("delivered", result.status)
    if result.token_invalid:
        since = result.timestamp_ms if result.outcome is Outcome.UNREGISTERED else None
        return Answer("removed", result.status, result.reason, since)
    if result.retry_later:
        return Answer("retry", result.status, result.reason)
    return Answer("failed", result.status, result.reason)


class IosPush(Channel):
    name = "ios_push"

    def __init__(self, client: APNsClient | None, unavailable: str | None = None):
        self._client = client
        self.unavailable = unavailable

    @staticmethod
    def normalize_token(token: str) -> str:
        if not APNS_TOKEN.fullmatch(token):
            raise ValueError("token must be a hexadecimal APNs device token of even length, "
                             "16 to 200 characters")
        return token.lower()

    @staticmethod
    def check_content(content: NotificationContent) -> None:
        size = len(apns_payload(content, "00000000-0000-0000-0000-000000000000", LARGEST_BADGE))
        if size > payload_limit("alert"):
            raise ValueError(f"the notification makes an APNs payload of {size} bytes; "
                             f"the limit is {payload_limit('alert')}")

    @classmethod
    def from_config(cls, config: Config) -> "IosPush":
        if config.apns is None:
            return cls(None, f"APNs is not configured: {', '.join(config.apns_missing)} unset")
        identity = config.apns
        return cls(APNsClient(
            identity.key_id, identity.team_id, identity.key_pem, identity.bundle_id,
            production_url=config.apns_production_url, sandbox_url=config.apns_sandbox_url,
            ca_file=config.apns_ca_file, connections=config.apns_connections))

    def prepare(self, claim: Claim) -> bytes:
        return apns_payload(claim.content, claim.notification_id, claim.unread)

    async def send(self, prepared: bytes, target: PushTarget) -> Answer:
        return answer_for(await self._client.send(target.token, prepared, target.environment))

    def send_soon(self, prepared: bytes, target: PushTarget, on_answer) -> None:
        self._client.send_soon(target.token, prepared, target.environment,
                               lambda result: on_answer(answer_for(result)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


CHANNEL = IosPush
