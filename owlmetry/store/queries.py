"""The store's SQL, written once for both engines.

Placeholders are numbered PostgreSQL-style (`$1`); the SQLite backend rewrites them to its own
numbered form (`?1`), which means the same thing. Only statements both engines run unchanged
belong here; a statement one engine needs in its own dialect lives in that backend's module.
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
