"""Firebase Cloud Messaging (HTTP v1) for Android devices: the service account, OAuth2 access
tokens, the message body and its limits, and what FCM's answers mean.

Usable on its own, like `owlmetry.apns`: must not know about databases, HTTP routes or the
service's device registry (`owlmetry.notify.providers.fcm` wires it into the dispatcher).
`mock/` is the project's testing server, an FCM stand-in (token endpoint and messages:send) for
tests and benchmarks.

- `service_account.py`: the Firebase service-account JSON, checked (`ServiceAccount`).
- `oauth.py`: access tokens from it, cached and refreshed by one request (`AccessTokens`).
- `message.py`: the `messages:send` body (`build_message`, `MessageTemplate`), reserved data
  keys and the 4,096-byte payload limit (`check_content`, `payload_limit`).
- `answers.py`: FCM's answers as decisions (`classify`, `Decision`, `FcmAnswer`).
- `client.py`: `FCMClient`, sends over the shared HTTP/2 core (`owlmetry.h2client`).
"""

from .answers import Decision, FcmAnswer, classify
from .message import MessageTemplate, build_message, check_content, payload_limit
from .oauth import AccessTokens, TokenError
from .service_account import ServiceAccount, ServiceAccountError, parse_service_account

__all__ = ["AccessTokens", "Decision", "FcmAnswer", "MessageTemplate", "ServiceAccount",
           "ServiceAccountError", "TokenError", "build_message", "check_content", "classify",
           "parse_service_account", "payload_limit"]
