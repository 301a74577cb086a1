"""Which of a producer's recipients are users: its part of the store's interface and its SQL.

The producer route reports the ids that name no user instead of dropping them in silence.
Mixed into `Store`, which sets `self.engine`. Must not normalise ids (owlmetry/ids.py does,
before they come here) nor enqueue anything.
"""

from owlmetry.store.engine import Engine

# The batch is one column of user ids.
EXISTING_USERS = {
    "sqlite": """
WITH batch (id) AS ({batch})
SELECT u.id FROM batch AS b JOIN users AS u ON u.id = b.id
""",
    "postgresql": "SELECT id FROM users WHERE id = ANY($1::text[])",
}


class Recipients:
    engine: Engine

    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        """Those of `user_ids` that are users' ids, in one read."""
        engine = self.engine
        rows = await engine.run_batched(engine.read, EXISTING_USERS[engine.name], ("text",),
                                        [(user_id,) for user_id in user_ids])
        return {user_id for (user_id,) in rows}
