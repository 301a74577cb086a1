"""Apple Push Notification service client: provider-token signing, a pool of long-lived HTTP/2
connections per APNs host, and `APNsClient`, which sends one push and returns a typed result.

Usable on its own. Must not know about databases, HTTP routes or the service's device registry;
`mock/` is the project's testing server: an APNs stand-in for tests and benchmarks.
"""

from .client import PRODUCTION_URL, SANDBOX_URL, APNsClient
from .pool import RetryPolicy
from .push_result import PushResult, ResultKind
from .token import ProviderToken

__all__ = ["PRODUCTION_URL", "SANDBOX_URL", "APNsClient", "ProviderToken", "PushResult",
           "ResultKind", "RetryPolicy"]
