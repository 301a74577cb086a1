"""What every push provider answers for a notification past its expiry (`expires_at` or
`ttl_seconds`, `owlmetry.push_options`) when its turn comes, on a retry or a late claim: it is
not sent, and fails saying so. Must not send anything.
"""

import time

from owlmetry.notify.channels.base import Answer
from owlmetry.push_options import PushOptions
from owlmetry.store import PushOutcome


def expired_answer(options: PushOptions, now_s: int | None = None) -> Answer | None:
    """The answer for every device when the notification has expired by `now_s`, else None."""
    if not options.expiration:  # no expiry (or try once): nothing to ask the clock
        return None
    if not options.expired(int(time.time()) if now_s is None else now_s):
        return None
    return Answer(PushOutcome.FAILED, None,
                  f"expired before it could be sent (expiration {options.expiration})")
