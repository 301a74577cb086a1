"""Apple Push Notification service client: APNs' small layer on the project's HTTP/2 client
core (`owlmetry.h2client`, which owns connections and pools): provider-token signing
(`token.py`, the core's authorization hook), requests as bytes (`wire.py`), Apple's retry rules
(`answers.py`, the core's judge), results (`push_result.py`), and `APNsClient`, which sends one
push and returns a typed result.

Usable on its own. Must not know about databases, HTTP routes or the service's device registry;
`mock/` is the project's testing server: an APNs stand-in for tests and benchmarks.
"""

from .answers import RetryPolicy
from .client import PRODUCTION_URL, SANDBOX_URL, APNsClient
from .push_result import PushResult, ResultKind
from .token import ProviderToken

__all__ = ["PRODUCTION_URL", "SANDBOX_URL", "APNsClient", "ProviderToken", "PushResult",
           "ResultKind", "RetryPolicy"]
