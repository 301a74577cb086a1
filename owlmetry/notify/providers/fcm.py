"""The FCM provider: Android devices, through FCM HTTP v1 on the project's HTTP/2 core
(`owlmetry.fcm.client`), one host for both environments.

Owns how an `FcmAnswer` maps onto an answer: a dead token (UNREGISTERED, SENDER_ID_MISMATCH, an
INVALID_ARGUMENT that blames the token) is REMOVED with the moment its send began as
`invalid_since`, since FCM gives no timestamp: a device registered again after that keeps its
row. Without a service account in the configuration the provider is unavailable and names the
variables to set. The message itself is `owlmetry.fcm.message`'s.
"""

import asyncio
import logging

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.fcm import Decision, FcmAnswer, MessageTemplate
from owlmetry.fcm import check_content as check_fcm_content
from owlmetry.fcm.client import FCMClient
from owlmetry.notify.channels.base import Answer, ConnectionStats, Sender
from owlmetry.notify.providers.expiry import expired_answer
from owlmetry.store import Claim, NotificationContent, PushOutcome, PushTarget

log = logging.getLogger("owlmetry.notify")

NOT_CONFIGURED = ("FCM is not configured: FCM_SERVICE_ACCOUNT_PATH (or FCM_SERVICE_ACCOUNT) "
                  "unset")
# The label of FCM's connections in /metrics: one host whatever the device's environment.
STATS_KEY = "fcm"
DELIVERED = PushOutcome.DELIVERED


def answer_for(answer: FcmAnswer, started_ms: int) -> Answer:
    decision = answer.decision
    if decision is Decision.DELIVERED:  # FCM's message name, for the producer's status
        return Answer(DELIVERED, 200, apns_id=answer.message_name)
    if decision is Decision.REMOVE:
        return Answer(PushOutcome.REMOVED, answer.status, answer.code, started_ms)
    if decision is Decision.FAIL:
        return Answer(PushOutcome.FAILED, answer.status or None, _reason(answer))
    # RETRY_AFTER, BACKOFF (and a REFRESH the client could not settle): the dispatcher retries,
    # not before the wait FCM asked for (a quota's lasts until the next minute).
    wait_ms = None if answer.retry_after_s is None else int(answer.retry_after_s * 1000)
    return Answer(PushOutcome.RETRY, answer.status or None, _reason(answer),
                  retry_after_ms=wait_ms)


def _reason(answer: FcmAnswer) -> str | None:
    if answer.code and answer.reason and answer.code not in answer.reason:
        return f"{answer.code}: {answer.reason}"
    return answer.reason or answer.code


class Prepared:
    """One claim's message, finished per device with its token."""

    __slots__ = ("notification_id", "template", "unread")

    def __init__(self, template: MessageTemplate, notification_id: str, unread: int):
        self.template, self.notification_id, self.unread = template, notification_id, unread

    def body(self, token: str) -> bytes:
        return self.template.render(token, self.notification_id, self.unread)


class FCM(Sender):

    def __init__(self, client: FCMClient | None, unavailable: str | None = None):
        self._client = client
        self.unavailable = unavailable
        self._content: NotificationContent | None = None
        self._template: MessageTemplate | Answer | None = None

    @staticmethod
    def check_content(content: NotificationContent, config: Config | None = None) -> None:
        # Only a server that sends to FCM refuses what FCM would refuse.
        if config is not None and config.fcm is not None:
            check_fcm_content(content)

    @classmethod
    def from_config(cls, config: Config) -> "FCM":
        if config.fcm is None:
            log.warning("Android devices will be skipped: %s", NOT_CONFIGURED)
            return cls(None, NOT_CONFIGURED)
        log.info("Android devices go to FCM at %s for Firebase project %s (service account %s)",
                 config.fcm_url, config.fcm.project_id, config.fcm.client_email)
        return cls(FCMClient(config.fcm, url=config.fcm_url, ca_file=config.fcm_ca_file))

    def prepare(self, claim: Claim) -> Prepared | Answer:
        # Claims of one fan-out share their content object: its template is made once.
        if claim.content is not self._content:
            self._content = claim.content
            try:
                self._template = MessageTemplate(claim.content)
            except ValueError as exc:  # a reserved data key, enqueued while FCM was not configured
                self._template = Answer(PushOutcome.FAILED, None, str(exc))
        if isinstance(self._template, Answer):
            return self._template
        expired = expired_answer(claim.content.options)
        if expired is not None:
            return expired
        return Prepared(self._template, claim.notification_id, claim.unread)

    async def send(self, prepared: Prepared | Answer, target: PushTarget) -> Answer:
        if isinstance(prepared, Answer):
            return prepared
        started = now_ms()
        return answer_for(await self._client.send(prepared.body(target.token)), started)

    def send_soon(self, prepared: Prepared | Answer, target: PushTarget, on_answer,
                  live=None) -> None:
        if isinstance(prepared, Answer):
            asyncio.get_running_loop().call_soon(on_answer, prepared)
            return
        started = now_ms()
        self._client.send_soon(prepared.body(target.token),
                               lambda answer: on_answer(answer_for(answer, started)), live)

    def connection_stats(self) -> dict[str, ConnectionStats]:
        if self._client is None:
            return {}
        stats = self._client.pool_stats()
        return {STATS_KEY: ConnectionStats(stats.connections, stats.streams, stats.queued)}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
