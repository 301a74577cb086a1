"""Users and API keys: their part of the store's interface, their SQL and their rows.

Emails are stored and compared lower-case. A user's preferences are stored as the JSON text
of an object and handed out parsed; how they merge is the caller's (owlmetry/preferences.py),
the store only makes the read-change-write atomic. Also the user checks the other features
share (`user_exists`, `why_missing`): a row of a user that is gone is a 401 to the API, not a
404; and a user's deletion with everything of theirs (`delete_user`: the inbox's rows have no
foreign keys to cascade, migration 14). Mixed into `Store`, which sets `self.engine`; must not
know HTTP or how a key is made.
"""

from collections.abc import Callable

import orjson

from owlmetry.store.engine import Engine
from owlmetry.store.retention import remove_notifications
from owlmetry.store.rows import ApiKey, EmailTaken, Missing, User

USER_COLUMNS = "id, email, created_at, preferences"

CREATE_USER = f"""
INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
RETURNING {USER_COLUMNS}
"""

# A first login with sign-up enabled; nothing when the email exists (a concurrent first login).
CREATE_USER_IF_NEW = f"""
INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
ON CONFLICT (email) DO NOTHING
RETURNING {USER_COLUMNS}
"""

USER_BY_EMAIL = f"SELECT {USER_COLUMNS} FROM users WHERE email = $1"
USER_BY_ID = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"

USER_EXISTS = "SELECT 1 FROM users WHERE id = $1"

# Read under the row's lock: two PATCHes of different channels both survive. (SQLite's
# transaction already holds the one write lock.)
USER_TO_UPDATE = {
    "sqlite": USER_BY_ID,
    "postgresql": f"{USER_BY_ID} FOR UPDATE",
}

SET_PREFERENCES = f"""
UPDATE users SET preferences = $2 WHERE id = $1
RETURNING {USER_COLUMNS}
"""

# The recipients of an enqueue that have preferences (most have none: NULL is not read).
RECIPIENT_PREFERENCES = {
    "sqlite": """
WITH batch (id) AS ({batch})
SELECT u.id, u.preferences
FROM batch AS b JOIN users AS u ON u.id = b.id
WHERE u.preferences IS NOT NULL
""",
    "postgresql": """
SELECT id, preferences FROM users
WHERE id = ANY($1::text[]) AND preferences IS NOT NULL
""",
}

# A user's deletion, in this order in one transaction. The user's row first: on PostgreSQL it
# waits for an enqueue's chunk that locked it (deliveries.INSERT_NOTIFICATIONS), and each
# statement after it sees what that chunk wrote. Devices, scheduled recipients and the like
# go with it (their foreign keys cascade); the inbox rows with everything that points at them
# (retention.remove_notifications); the unread count last, after any inbox change under way.
DELETE_USER = "DELETE FROM users WHERE id = $1 RETURNING id"
NOTIFICATIONS_OF_USER = "SELECT id, content_id FROM notifications WHERE user_id = $1"
DELETE_UNREAD_COUNT = "DELETE FROM unread_counts WHERE user_id = $1"

API_KEY_COLUMNS = "id, kind, name, created_at, revoked_at"

CREATE_API_KEY = f"""
INSERT INTO api_keys (id, kind, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)
RETURNING {API_KEY_COLUMNS}
"""

API_KEY_BY_HASH = f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"

LIST_API_KEYS = f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"

REVOKE_API_KEY = """
UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id
"""


async def user_exists(engine: Engine, user_id: str) -> bool:
    return bool(await engine.read(USER_EXISTS, user_id))


async def why_missing(engine: Engine, user_id: str) -> Missing:
    """Why a row of the user's was not found: NOT_FOUND, or NO_USER (a 401, not a 404)."""
    return Missing.NOT_FOUND if await user_exists(engine, user_id) else Missing.NO_USER


async def unless_user_gone(engine: Engine, user_id: str, found):
    """`found` when it says something, else None if the user is gone (a 401, not a 404)."""
    if found or await user_exists(engine, user_id):
        return found
    return None


def user_of(row) -> User:
    user_id, email, created_at, preferences = row
    return User(user_id, email, created_at,
                orjson.loads(preferences) if preferences is not None else None)


class UsersAndKeys:
    engine: Engine

    async def create_user(self, user_id: str, email: str, now: int) -> User:
        """Raise EmailTaken when the email (compared lower-case) exists."""
        try:
            (row,) = await self.engine.write(CREATE_USER, user_id, email.lower(), now)
        except Exception as exc:
            if self.engine.is_unique_violation(exc):
                raise EmailTaken(f"a user with email {email!r} already exists") from None
            raise
        return user_of(row)

    async def user_by_email(self, email: str) -> User | None:
        rows = await self.engine.read(USER_BY_EMAIL, email.lower())
        return user_of(rows[0]) if rows else None

    async def user_exists(self, user_id: str) -> bool:
        return await user_exists(self.engine, user_id)

    async def user_by_id(self, user_id: str) -> User | None:
        rows = await self.engine.read(USER_BY_ID, user_id)
        return user_of(rows[0]) if rows else None

    async def update_preferences(
        self, user_id: str, change: Callable[[dict | None], dict]
    ) -> User | None:
        """Store `change(stored preferences)` in one transaction, so a concurrent update is
        never lost; the user as now stored, or None when there is no such user. An exception
        from `change` leaves the row as it was."""
        engine = self.engine
        async with engine.transaction() as run:
            rows = await run(USER_TO_UPDATE[engine.name], user_id)
            if not rows:
                return None
            changed = change(user_of(rows[0]).preferences)
            (row,) = await run(SET_PREFERENCES, user_id, orjson.dumps(changed).decode())
        return user_of(row)

    async def preferences_of(self, user_ids: list[str]) -> dict[str, dict]:
        """The stored preferences of those of `user_ids` that have any, in one read. Users whose
        stored text is the same share one (read-only) dict."""
        engine = self.engine
        rows = await engine.run_batched(engine.read_bulk, RECIPIENT_PREFERENCES[engine.name],
                                        ("text",), [(user_id,) for user_id in user_ids])
        parsed: dict[str, dict] = {}
        found = {}
        for user_id, text in rows:
            preferences = parsed.get(text)
            if preferences is None:
                preferences = parsed[text] = orjson.loads(text)
            found[user_id] = preferences
        return found

    async def login_user(
        self, user_id: str, email: str, now: int, create: bool
    ) -> tuple[User, bool] | None:
        """The user with this email and whether it was made now: when there is none and
        `create` (sign-up is open), one is made with `user_id`; otherwise None."""
        user = await self.user_by_email(email)
        if user is not None:
            return user, False
        if not create:
            return None
        rows = await self.engine.write(CREATE_USER_IF_NEW, user_id, email.lower(), now)
        if rows:
            return user_of(rows[0]), True
        # A concurrent first login of the same email made the user between the read and here.
        user = await self.user_by_email(email)
        return (user, False) if user is not None else None

    async def delete_user(self, user_id: str) -> bool:
        """Delete the user and everything of theirs: devices, inbox, deliveries, answers'
        records, unread count, scheduled recipients, and the contents no one else's row points
        at. False when there is no such user."""
        engine = self.engine
        async with engine.transaction() as run:
            if not await run(DELETE_USER, user_id):
                return False
            await remove_notifications(engine, run, await run(NOTIFICATIONS_OF_USER, user_id))
            await run(DELETE_UNREAD_COUNT, user_id)
        return True

    async def create_api_key(
        self, key_id: str, kind: str, name: str | None, key_hash: str, now: int
    ) -> ApiKey:
        (row,) = await self.engine.write(CREATE_API_KEY, key_id, kind, name, key_hash, now)
        return ApiKey(*row)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Revoked keys are returned too; the caller decides."""
        rows = await self.engine.read(API_KEY_BY_HASH, key_hash)
        return ApiKey(*rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in await self.engine.read(LIST_API_KEYS)]

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        """False when no unrevoked key has that id."""
        return bool(await self.engine.write(REVOKE_API_KEY, key_id, now))
