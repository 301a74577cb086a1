"""Exponential backoff with jitter: the one rule for "how long before trying again".

Used wherever something is retried (APNs sends and reconnects, queued deliveries). A leaf
module: it imports nothing of the project, so `owlmetry.apns` can use it and still stand alone.
"""

import random


def backoff(base: float, attempt: int, cap: float) -> float:
    """The wait before retry number `attempt` (0 = the first retry): `base` doubled per
    attempt, at most `cap`, then drawn from its upper half so that many clients that failed
    together do not retry together."""
    return min(cap, base * 2 ** attempt) * random.uniform(0.5, 1.0)
