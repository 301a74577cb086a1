"""The store's SQL, written once for both engines.

Placeholders are numbered PostgreSQL-style (`$1`); the SQLite backend rewrites them to its own
numbered form (`?1`), which means the same thing. The batched upsert takes a whole batch as one
parameter; each backend fills `{batch}` with its own way of turning that parameter into rows
(SQLite: a JSON array through json_each; PostgreSQL: arrays through unnest).
"""

SETTING = """
INSERT INTO settings (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = settings.value
RETURNING value
"""

CREATE_USER = """
INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
RETURNING id, email, created_at
"""

USER_BY_EMAIL = "SELECT id, email, created_at FROM users WHERE email = $1"

USER_EXISTS = "SELECT 1 FROM users WHERE id = $1"

CREATE_API_KEY = """
INSERT INTO api_keys (id, kind, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)
RETURNING id, kind, name, created_at, revoked_at
"""

API_KEY_BY_HASH = """
SELECT id, kind, name, created_at, revoked_at FROM api_keys WHERE key_hash = $1
"""

LIST_API_KEYS = """
SELECT id, kind, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id
"""

REVOKE_API_KEY = """
UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id
"""

DELETE_DEVICE = "DELETE FROM user_devices WHERE id = $1 AND user_id = $2 RETURNING id"

# The last-come registration of each token, for every row of the batch whose user exists.
# Rows go in token order so that concurrent batches take index locks in one order.
UPSERT_DEVICES = """
WITH batch (id, user_id, channel, token, environment, app_version, device_model, os_version, seen)
    AS ({batch})
INSERT INTO user_devices (id, user_id, channel, token, environment,
                          app_version, device_model, os_version, last_seen_at, created_at)
SELECT b.id, u.id, b.channel, b.token, b.environment,
       b.app_version, b.device_model, b.os_version, b.seen, b.seen
FROM batch AS b JOIN users AS u ON u.id = b.user_id
ORDER BY b.token
ON CONFLICT (token) DO UPDATE SET
    user_id      = excluded.user_id,
    channel      = excluded.channel,
    environment  = excluded.environment,
    app_version  = excluded.app_version,
    device_model = excluded.device_model,
    os_version   = excluded.os_version,
    last_seen_at = excluded.last_seen_at
RETURNING token, id, channel, environment, app_version, device_model, os_version,
          last_seen_at, created_at
"""
