"""Idempotency keys: the statements behind producers' `Idempotency-Key`, one row per API key and key.

A row is reserved by one request (its `holder`, under a lease), renewed while that request
writes, finished with the answer, or taken over by a retry once its lease has passed with no
answer; a row older than the keys' life counts as absent (a new request reserves it again) until
the retention prunes it. Every change names the holder, so a request that lost its row changes
nothing. Also answers whom a content's notifications reached, or were held for until their
`send_at` (a takeover's question). Mixed into
`Store`, which sets `self.engine`. Must not decide leases, lifetimes or what a request answers
(`owlmetry.idempotency`).

Both engines take the same statements: an upsert whose update applies only to an expired row,
and row-value `IN` for the bounded prune.
"""

from dataclasses import dataclass

from owlmetry.store.engine import Engine

# $1 api key, $2 key, $3 hash, $4 content id, $5 holder, $6 leased until, $7 now, $8 rows made
# before it have expired. A row comes back only when this request reserved the key.
RESERVE = """
INSERT INTO idempotency_keys (api_key_id, idempotency_key, request_hash, content_id, holder,
                              leased_until, answer, created_at)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
ON CONFLICT (api_key_id, idempotency_key) DO UPDATE
SET request_hash = excluded.request_hash, content_id = excluded.content_id,
    holder = excluded.holder, leased_until = excluded.leased_until, answer = NULL,
    created_at = excluded.created_at
WHERE idempotency_keys.created_at < $8
RETURNING holder
"""

READ = """
SELECT request_hash, content_id, holder, leased_until, answer, created_at
FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2
"""

# $3 the new holder, $4 its lease's end, $5 now, $6 the expiry cutoff: an unanswered, unexpired
# row whose lease has passed.
TAKE_OVER = """
UPDATE idempotency_keys SET holder = $3, leased_until = $4
WHERE api_key_id = $1 AND idempotency_key = $2 AND answer IS NULL
  AND leased_until <= $5 AND created_at >= $6
RETURNING content_id
"""

# $3 the holder, $4 the lease's new end (0: given up, a retry may take over at once).
RENEW = """
UPDATE idempotency_keys SET leased_until = $4
WHERE api_key_id = $1 AND idempotency_key = $2 AND holder = $3 AND answer IS NULL
RETURNING 1
"""

# $3 the holder, $4 the answer (JSON text).
FINISH = """
UPDATE idempotency_keys SET answer = $4
WHERE api_key_id = $1 AND idempotency_key = $2 AND holder = $3 AND answer IS NULL
RETURNING 1
"""

# Through `notifications_content`: the rows one request wrote.
NOTIFIED = "SELECT user_id, id FROM notifications WHERE content_id = $1"

SCHEDULED = "SELECT 1 FROM scheduled_sends WHERE content_id = $1"

# One statement, so that a release ending meanwhile (its recipients' rows go once their
# notifications exist) is seen before or after, never half-way. Cancelled recipients count.
HELD = """
SELECT user_id, notification_id FROM scheduled_recipients WHERE content_id = $1
UNION
SELECT user_id, id FROM notifications WHERE content_id = $1
"""

# $1 rows made before it go, $2 at most this many.
PRUNE = """
DELETE FROM idempotency_keys
WHERE (api_key_id, idempotency_key) IN (
    SELECT api_key_id, idempotency_key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)
RETURNING 1
"""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    content_id: str
    holder: str
    leased_until: int
    answer: str | None  # JSON text, once the request is done
    created_at: int


class IdempotencyKeys:
    engine: Engine

    async def reserve_idempotency_key(self, api_key_id: str, key: str, request_hash: str,
                                      content_id: str, holder: str, leased_until: int, now: int,
                                      expired_before: int) -> bool:
        """Make `holder` the key's holder if no one has the key, or its row was made before
        `expired_before`; whether it did."""
        return bool(await self.engine.write(RESERVE, api_key_id, key, request_hash, content_id,
                                            holder, leased_until, now, expired_before))

    async def idempotency_key(self, api_key_id: str, key: str) -> IdempotencyRecord | None:
        rows = await self.engine.read(READ, api_key_id, key)
        return IdempotencyRecord(*rows[0]) if rows else None

    async def take_over_idempotency_key(self, api_key_id: str, key: str, holder: str,
                                        leased_until: int, now: int,
                                        expired_before: int) -> str | None:
        """Make `holder` the holder of an unanswered, unexpired key whose lease has passed; its
        content id, or None when it is not such a key (any more)."""
        rows = await self.engine.write(TAKE_OVER, api_key_id, key, holder, leased_until, now,
                                       expired_before)
        return rows[0][0] if rows else None

    async def renew_idempotency_key(self, api_key_id: str, key: str, holder: str,
                                    leased_until: int) -> bool:
        """Move the lease's end (0 gives it up); False once `holder` no longer holds the key."""
        return bool(await self.engine.write(RENEW, api_key_id, key, holder, leased_until))

    async def finish_idempotency_key(self, api_key_id: str, key: str, holder: str,
                                     answer: str) -> bool:
        """Store the answer; False (nothing stored) once `holder` no longer holds the key."""
        return bool(await self.engine.write(FINISH, api_key_id, key, holder, answer))

    async def notified_by_content(self, content_id: str) -> dict[str, str]:
        """user id -> notification id of every notification pointing at `content_id`."""
        return dict(await self.engine.read(NOTIFIED, content_id))

    async def held_by_content(self, content_id: str) -> dict[str, str] | None:
        """user id -> notification id of the scheduled send stored under `content_id` (held,
        cancelled or released since); None when no send was stored under it."""
        if not await self.engine.read(SCHEDULED, content_id):
            return None
        return dict(await self.engine.read(HELD, content_id))

    async def prune_idempotency_keys(self, created_before: int, limit: int) -> int:
        """Delete up to `limit` keys made before `created_before`; how many."""
        return len(await self.engine.write_bulk(PRUNE, created_before, limit))
