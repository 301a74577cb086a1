"""The store's SQL, written once for both engines.

Placeholders are numbered PostgreSQL-style (`$1`); the SQLite backend rewrites them to its own
numbered form (`?1`), which means the same thing. A batched statement takes a whole batch as
one parameter; each backend fills `{batch}` with its own way of turning that parameter into rows
(SQLite: a JSON array through json_each; PostgreSQL: arrays through unnest).
"""

SETTING = """
INSERT INTO settings (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = settings.value
RETURNING value
"""

SCHEMA_DIGEST = "SELECT value FROM settings WHERE key = 'schema_sha256'"

SET_SCHEMA_DIGEST = """
INSERT INTO settings (key, value) VALUES ('schema_sha256', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

CREATE_USER = """
INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
RETURNING id, email, created_at
"""

USER_BY_EMAIL = "SELECT id, email, created_at FROM users WHERE email = $1"
USER_BY_ID = "SELECT id, email, created_at FROM users WHERE id = $1"

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

# ---- Notifications ------------------------------------------------------------------------
# `{batch}` is the backend's rows-from-one-parameter source (see `SQLStore._batch`). Values
# every row shares mostly ride along in each row, which keeps the placeholders simple; where
# they are large (the enqueue), they come first as $1.. and the batch after them.

# $1..$7 are the same for every recipient; the batch of (id, user_id) comes after them.
ENQUEUE_NOTIFICATIONS = """
WITH batch (id, user_id) AS ({batch})
INSERT INTO notifications (id, user_id, type, title, body, link, data, team_id, created_at)
SELECT b.id, u.id, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT),
       CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS BIGINT)
FROM batch AS b JOIN users AS u ON u.id = b.user_id
RETURNING id
"""

ENQUEUE_DELIVERIES = """
WITH batch (notification_id) AS ({batch})
INSERT INTO notification_deliveries (notification_id, channel, status, available_at, created_at)
SELECT notification_id, CAST($1 AS TEXT), 'pending', CAST($2 AS BIGINT), CAST($2 AS BIGINT)
FROM batch
"""

# The oldest due pending deliveries, leased to $1 until $3. `{only}` may narrow it to some
# notifications; `{lock}` is PostgreSQL's FOR UPDATE SKIP LOCKED (SQLite has one writer).
CLAIM_DELIVERIES = """
UPDATE notification_deliveries
SET claimed_by = $1, available_at = $3, attempts = attempts + 1
WHERE (notification_id, channel) IN (
    SELECT notification_id, channel FROM notification_deliveries
    WHERE status = 'pending' AND available_at <= $2 {only}
    ORDER BY available_at
    LIMIT $4 {lock})
RETURNING notification_id, channel, attempts
"""

CLAIMED_NOTIFICATIONS = """
WITH batch (id) AS ({batch})
SELECT n.id, n.user_id, n.type, n.title, n.body, n.link, n.data, n.team_id,
       (SELECT count(*) FROM notifications AS unread
        WHERE unread.user_id = n.user_id AND unread.read_at IS NULL
          AND unread.deleted_at IS NULL)
FROM batch AS b JOIN notifications AS n ON n.id = b.id
"""

# The recipients' devices of channel $1. For a first attempt that is all of them: nothing can
# be on record yet.
CLAIMED_TARGETS = """
WITH batch (id) AS ({batch})
SELECT n.id, d.id, d.token, d.environment
FROM batch AS b
JOIN notifications AS n ON n.id = b.id
JOIN user_devices AS d ON d.user_id = n.user_id AND d.channel = CAST($1 AS TEXT)
"""

# For a delivery claimed again: the devices no earlier attempt has an answer for.
UNANSWERED_TARGETS = CLAIMED_TARGETS + """WHERE NOT EXISTS (
    SELECT 1 FROM notification_pushes AS p
    WHERE p.notification_id = n.id AND p.device_id = d.id)
"""

EARLIER_OUTCOMES = """
WITH batch (id, channel) AS ({batch})
SELECT p.notification_id, p.channel, p.outcome, count(*)
FROM batch AS b
JOIN notification_pushes AS p ON p.notification_id = b.id AND p.channel = b.channel
GROUP BY p.notification_id, p.channel, p.outcome
"""

RENEW_LEASES = """
WITH batch (notification_id, channel, claimed_by, available_at) AS ({batch})
UPDATE notification_deliveries AS d SET available_at = b.available_at
FROM batch AS b
WHERE d.notification_id = b.notification_id AND d.channel = b.channel
  AND d.claimed_by = b.claimed_by AND d.status = 'pending'
"""

# A dead token's device goes, unless it was registered again after APNs gave up on it.
DELETE_DEAD_DEVICES = """
WITH batch (device_id, invalid_since) AS ({batch})
DELETE FROM user_devices WHERE id IN (
    SELECT d.id FROM batch AS b JOIN user_devices AS d ON d.id = b.device_id
    WHERE b.invalid_since IS NULL OR d.last_seen_at <= b.invalid_since)
"""

EXISTING_DEVICES = """
WITH batch (id) AS ({batch})
SELECT d.id FROM batch AS b JOIN user_devices AS d ON d.id = b.id
"""

# Joined with notifications so that a recipient deleted mid-fan-out costs its records only.
RECORD_PUSHES = """
WITH batch (notification_id, device_id, channel, outcome, status, reason, answered_at)
    AS ({batch})
INSERT INTO notification_pushes
    (notification_id, device_id, channel, outcome, status, reason, answered_at)
SELECT b.notification_id, b.device_id, b.channel, b.outcome, b.status, b.reason, b.answered_at
FROM batch AS b JOIN notifications AS n ON n.id = b.notification_id
WHERE true
ON CONFLICT (notification_id, device_id) DO NOTHING
"""

# Only the lease holder may end a delivery: a process that lost its lease changes nothing.
# `claimed_by` stays, naming the dispatcher that did the work last.
END_DELIVERIES = """
WITH batch (notification_id, channel, status, reason, available_at, claimed_by, finished_at)
    AS ({batch})
UPDATE notification_deliveries AS d
SET status = b.status, reason = b.reason, available_at = b.available_at,
    finished_at = b.finished_at
FROM batch AS b
WHERE d.notification_id = b.notification_id AND d.channel = b.channel
  AND d.claimed_by = b.claimed_by AND d.status = 'pending'
"""

DELIVERY_PROGRESS = """
WITH batch (id) AS ({batch})
SELECT d.status, count(*)
FROM batch AS b JOIN notification_deliveries AS d ON d.notification_id = b.id
GROUP BY d.status
"""

PUSH_PROGRESS = """
WITH batch (id) AS ({batch})
SELECT p.outcome, count(*)
FROM batch AS b JOIN notification_pushes AS p ON p.notification_id = b.id
GROUP BY p.outcome
"""

# ---- Metrics (read at every scrape of /metrics) ------------------------------------------

# One channel's devices in each environment the schema allows: one scan of the registry,
# without the sort a GROUP BY costs SQLite (4x the time at a million devices).
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

# ---- The inbox ----------------------------------------------------------------------------
# Optional filters are NULL when unused; the CASTs tell PostgreSQL their types.

NOTIFICATION_COLUMNS = "id, type, title, body, link, team_id, read_at, created_at"

LIST_NOTIFICATIONS = f"""
SELECT {NOTIFICATION_COLUMNS} FROM notifications
WHERE user_id = $1 AND deleted_at IS NULL
  AND (CAST($2 AS TEXT) = 'all'
       OR (CAST($2 AS TEXT) = 'unread' AND read_at IS NULL)
       OR (CAST($2 AS TEXT) = 'read' AND read_at IS NOT NULL))
  AND (CAST($3 AS TEXT) IS NULL OR type = $3)
  AND (CAST($4 AS BIGINT) IS NULL OR (created_at, id) < (CAST($4 AS BIGINT), CAST($5 AS TEXT)))
ORDER BY created_at DESC, id DESC
LIMIT $6
"""

UNREAD_COUNT = """
SELECT count(*) FROM notifications
WHERE user_id = $1 AND read_at IS NULL AND deleted_at IS NULL
"""

MARK_ALL_READ = """
UPDATE notifications SET read_at = $3
WHERE user_id = $1 AND read_at IS NULL AND deleted_at IS NULL
  AND (CAST($2 AS TEXT) IS NULL OR type = $2)
RETURNING id
"""

# Marking a read notification read again keeps the first time it was read.
SET_READ = f"""
UPDATE notifications
SET read_at = CASE WHEN CAST($3 AS BIGINT) IS NULL THEN NULL ELSE COALESCE(read_at, $3) END
WHERE id = $2 AND user_id = $1 AND deleted_at IS NULL
RETURNING {NOTIFICATION_COLUMNS}
"""

DELETE_NOTIFICATION = """
UPDATE notifications SET deleted_at = $3
WHERE id = $2 AND user_id = $1 AND deleted_at IS NULL
RETURNING id
"""

# ---- Users and login codes ----------------------------------------------------------------

# A first login with sign-up enabled; nothing when the email exists (a concurrent first login).
CREATE_USER_IF_NEW = """
INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
ON CONFLICT (email) DO NOTHING
RETURNING id, email, created_at
"""

# How many codes the email got after $2, and when the oldest of them was made. Run after the
# backend's per-email lock (`SQLStore._login_code_lock`), so that no other send slips between
# this count and the insert.
RECENT_LOGIN_CODES = """
SELECT count(*), min(created_at) FROM login_codes WHERE email = $1 AND created_at > $2
"""

ADD_LOGIN_CODE = """
INSERT INTO login_codes (id, email, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
"""

DISCARD_LOGIN_CODE = "DELETE FROM login_codes WHERE id = $1"

FORGET_LOGIN_CODES = "DELETE FROM login_codes WHERE created_at <= $1"

# One verification, in one statement: every outstanding code of the email counts the attempt,
# and the one that matches is used. A code that has counted $4 attempts is void. Concurrent
# verifications update the same rows one after the other (PostgreSQL re-checks the WHERE on the
# row it waited for), so neither a code's single use nor its attempt limit can be raced.
USE_LOGIN_CODE = """
UPDATE login_codes
SET attempts = attempts + 1,
    used_at = CASE WHEN code_hash = $2 THEN CAST($3 AS BIGINT) END
WHERE email = $1 AND used_at IS NULL AND expires_at > CAST($3 AS BIGINT) AND attempts < $4
RETURNING used_at
"""
