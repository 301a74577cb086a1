"""What /metrics reads from the database at every scrape: cheap, read-only questions.

Mixed into `Store`, which sets `self.engine`. Must not write anything.
"""

from owlmetry.store.engine import Engine
from owlmetry.store.rows import PendingState

# One channel's devices in each environment the schema allows: one scan of the registry,
# without the sort a GROUP BY costs SQLite.
DEVICE_COUNTS = """
SELECT COALESCE(sum(CASE WHEN environment = 'production' THEN 1 ELSE 0 END), 0),
       COALESCE(sum(CASE WHEN environment = 'sandbox' THEN 1 ELSE 0 END), 0)
FROM user_devices WHERE channel = $1
"""

# Through the partial index of pending rows: as cheap as the backlog is short.
PENDING_DELIVERIES = """
SELECT COALESCE(sum(CASE WHEN available_at <= CAST($1 AS BIGINT) THEN 1 ELSE 0 END), 0),
       count(*)
FROM notification_deliveries WHERE status = 'pending'
"""


class MetricsReads:
    engine: Engine

    async def device_counts(self, channels: list[str]) -> dict[tuple[str, str], int]:
        """Registered devices of these channels by (channel, environment), zeros included."""
        counts = {}
        for channel in channels:
            ((production, sandbox),) = await self.engine.read(DEVICE_COUNTS, channel)
            counts[channel, "production"], counts[channel, "sandbox"] = production, sandbox
        return counts

    async def pending_deliveries(self, now: int) -> dict[PendingState, int]:
        """Pending deliveries by state: DUE (claimable at `now`) and LATER (leased by a
        dispatcher or waiting out a retry backoff: the store cannot tell these apart)."""
        ((due, pending),) = await self.engine.read(PENDING_DELIVERIES, now)
        return {PendingState.DUE: due, PendingState.LATER: pending - due}
