"""What the mock FCM counts (`FcmStats`): the APNs mock's counters (requests and acceptances per
token, connections, streams, GOAWAYs, drops, lost answers), plus FCM's outcomes and the token
endpoint's work. Served to other processes by the APNs mock's `serve_stats`. Must not decide
answers.
"""

from collections import Counter
from dataclasses import dataclass, field

from owlmetry.apns.mock.stats import MockStats


@dataclass
class FcmStats(MockStats):
    """`requests`/`delivered`/`payloads` are keyed by registration token; `provider_tokens`
    holds the access tokens that were accepted on a send."""

    outcomes: Counter = field(default_factory=Counter)  # "OK" or FCM's error code -> sends
    token_requests: int = 0  # requests to the token endpoint
    tokens_issued: int = 0
    token_refusals: Counter = field(default_factory=Counter)  # OAuth error -> requests

    def summary(self) -> dict:
        out = super().summary()
        del out["topics"]
        out["access_tokens"] = out.pop("provider_tokens")
        out["outcomes"] = dict(self.outcomes)
        out["token_refusals"] = dict(self.token_refusals)
        return out
