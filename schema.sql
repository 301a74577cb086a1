-- The one schema of the Owlmetry push service, for SQLite and PostgreSQL alike.
--
-- A new database is made from this file; a database of an earlier release is brought here by
-- the ordered steps in owlmetry/store/migrations/ (each recorded in `schema_migrations`), so a
-- change here comes with a migration that makes the same change. Types are the portable
-- subset of both engines: ids are uuid strings, timestamps are BIGINT milliseconds since the
-- Unix epoch (UTC) -- the unit of APNs' 410 `timestamp`, so "was this token registered again
-- after Apple gave up on it?" is a plain integer comparison.

-- Which migrations this database has had (owlmetry/store/migrations/NNNN_*.sql).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
);

-- Never the JWT signing secret: it lives outside the database (JWT_SECRET or the key file), so
-- a copy of the database cannot mint sessions (migration 6 removed the one kept here before).
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,          -- stored lower-case
    created_at BIGINT NOT NULL,
    -- The JSON object of owlmetry/preferences.py (per-type channel choices, the apps' `ui`
    -- settings); NULL: none set, every type's defaults apply.
    preferences TEXT
);

CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('agent', 'server')),
    name       TEXT,
    key_hash   TEXT NOT NULL UNIQUE,          -- sha256 hex of the secret; the secret is never stored
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Sessions ended before their tokens expire (owlmetry/store/sessions.py): a logout ends one
-- (`session_key`: the token's `sid`, or its hash), `owlmetry users revoke-sessions` every one
-- of the user's issued up to `created_at` (`session_key` NULL). `seq` numbers them in commit
-- order: each server keeps them all in memory and reads the newer ones every second.
CREATE TABLE IF NOT EXISTS session_revocations (
    seq         BIGINT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    session_key TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT                        -- the token's expiry; NULL: never
);

-- The rows whose tokens have expired, pruned at every revocation.
CREATE INDEX IF NOT EXISTS session_revocations_expiry ON session_revocations (expires_at);

CREATE TABLE IF NOT EXISTS user_devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel      TEXT NOT NULL,                -- as registered: ios_push (the seed's) or mobile_push
    platform     TEXT NOT NULL DEFAULT 'ios',  -- ios | android; ios_push devices are ios (migration 3)
    token        TEXT NOT NULL,                -- per platform (owlmetry/device_tokens.py); never leaves the server
    environment  TEXT NOT NULL CHECK (environment IN ('production', 'sandbox')),
    app_version  TEXT,
    device_model TEXT,
    os_version   TEXT,
    last_seen_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- The token is the registry's key: one row per token, whoever registered it last owns it.
CREATE UNIQUE INDEX IF NOT EXISTS user_devices_token ON user_devices (token);

-- A user's devices in list order (GET /v1/devices), and every fan-out's device lookup.
CREATE INDEX IF NOT EXISTS user_devices_user
    ON user_devices (user_id, last_seen_at DESC, created_at DESC, id);

-- A notification's content, written once per producer request however many recipients it
-- has; each recipient's row in `notifications` points at it. `data` is the producer's JSON
-- object (text), sent with the push but never listed. Time-ordered ids (uuid7), so the
-- recipient rows of one request land side by side in `notifications_content`. Removed with
-- the last recipient row that points at it (the retention's clean-up).
CREATE TABLE IF NOT EXISTS notification_contents (
    id      TEXT PRIMARY KEY,
    type    TEXT NOT NULL,
    title   TEXT NOT NULL,
    body    TEXT,
    link    TEXT,
    data    TEXT,
    team_id TEXT,
    -- How its pushes go out (owlmetry.push_options): JSON of the options a producer set,
    -- NULL for today's push (an alert, priority 10, sound "default", the unread badge).
    push_options TEXT
);

-- The inbox: one row per recipient of a notification, its id the one the API and the push
-- carry. Soft-deleted rows keep `deleted_at`. No foreign keys (migration 14), here and on the
-- unread counts and the deliveries: a fan-out writes tens of thousands of rows a request, and
-- a key check per row cost a third of the enqueue, whose statement already joins the users
-- (locking their rows on PostgreSQL) and the rows it wrote. The store writes a content before,
-- or with, its first row; `Store.delete_user` and the retention delete what pointed at a row.
CREATE TABLE IF NOT EXISTS notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    content_id TEXT NOT NULL,
    read_at    BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Does a content still have a recipient row? (the retention's clean-up). A request's rows all
-- land at the index's end, under one key.
CREATE INDEX IF NOT EXISTS notifications_content ON notifications (content_id);

-- A user's inbox newest first, paged by the keyset (created_at, id): the unread rows and the
-- read ones are two ranges of the user's (migration 13), so the unread list and mark-all-read
-- read only unread rows, and the whole inbox merges the two. The only index a new row lands in
-- at a place of its user's: a fan-out to ten thousand users touches ten thousand of its pages,
-- so there is no second.
CREATE INDEX IF NOT EXISTS notifications_inbox
    ON notifications (user_id, (read_at IS NULL), created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- The retention's clean-up: read rows by when they were read, soft-deleted rows by when.
CREATE INDEX IF NOT EXISTS notifications_read
    ON notifications (read_at) WHERE read_at IS NOT NULL AND deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS notifications_deleted
    ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;

-- Each user's count of notifications with `read_at IS NULL AND deleted_at IS NULL`: the badge
-- of every push and GET /v1/notifications/unread-count, at a cost that does not grow with the
-- inbox. Every statement that adds such a row, or changes or removes one, changes the count in
-- the same transaction (owlmetry/store: deliveries.py, inbox.py). No row: zero.
CREATE TABLE IF NOT EXISTS unread_counts (
    user_id TEXT PRIMARY KEY,
    unread  BIGINT NOT NULL
);

-- The work queue: one row per notification and delivery channel (mobile_push, email, ...),
-- pending -> sent | failed | skipped. The status rule (and `notification_pushes`' outcome
-- rule) is written as comparisons, not `IN (...)`: SQLite rebuilds the list of a CHECK's `IN`
-- as a temporary b-tree for every row it checks (migration 15).
-- A pending row may be claimed once `available_at` has passed; a claim pushes `available_at`
-- one lease ahead (renewed while the work runs), so work abandoned by a crashed process
-- becomes claimable again by itself, and a retry after a backoff is the same column.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    notification_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL
        CHECK (status = 'pending' OR status = 'sent' OR status = 'failed' OR status = 'skipped'),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,            -- the dispatcher holding (or that last held) the lease
    available_at    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    -- Its devices by outcome, written with its end (migration 12), so the producer's status
    -- of a finished fan-out counts nothing; NULL while pending (then counted from the answers).
    delivered       INTEGER,
    removed         INTEGER,
    failed          INTEGER,
    skipped         INTEGER,
    PRIMARY KEY (notification_id, channel)
);

CREATE INDEX IF NOT EXISTS notification_deliveries_queue
    ON notification_deliveries (available_at) WHERE status = 'pending';

-- Scheduled sends (`send_at`): a producer request held until its time. Its content is stored
-- at once in `notification_contents` (`content_id`, the key here too); nothing else of it exists
-- until the release loop (owlmetry/notify/releaser.py) claims it, under a lease like a delivery's
-- (`available_at` starts at `send_at`; a claim moves it one lease ahead), and enqueues its
-- recipients with their pre-assigned ids. `claimed_by` set means the release has started: no
-- cancel from then on. `released_at` is set when every recipient was enqueued.
CREATE TABLE IF NOT EXISTS scheduled_sends (
    content_id   TEXT PRIMARY KEY,
    send_at      BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    claimed_by   TEXT,
    created_at   BIGINT NOT NULL,
    released_at  BIGINT
);

CREATE INDEX IF NOT EXISTS scheduled_sends_due
    ON scheduled_sends (available_at) WHERE released_at IS NULL;

-- A scheduled send's recipients, each with the notification id the producer was given. Rows
-- enqueued go when the release ends (the inbox row answers for them from then on); cancelled
-- ones stay, so a second cancel gets the same answer.
CREATE TABLE IF NOT EXISTS scheduled_recipients (
    notification_id TEXT PRIMARY KEY,
    content_id      TEXT NOT NULL REFERENCES scheduled_sends (content_id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cancelled_at    BIGINT
);

CREATE INDEX IF NOT EXISTS scheduled_recipients_send ON scheduled_recipients (content_id);

-- One row per device a delivery reached with a final answer, so a fan-out resumed after a
-- crash skips the devices already answered. A channel that sends to the user rather than to
-- devices (email) keeps the user's id in `device_id`. No foreign keys: a dead token's device row is
-- deleted and the record of why stays; and these rows are written thousands a second, so the
-- insert itself joins the notification instead of a per-row key check (a user's deletion
-- removes their notifications' records).
CREATE TABLE IF NOT EXISTS notification_pushes (
    notification_id TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    outcome         TEXT NOT NULL
        CHECK (outcome = 'delivered' OR outcome = 'removed' OR outcome = 'failed'
               OR outcome = 'skipped'),
    status          INTEGER,
    reason          TEXT,
    answered_at     BIGINT NOT NULL,
    -- What the producer's status route shows (migration 12): the provider's id of the message
    -- (APNs' apns-id, FCM's message name), and when the attempt that got this answer began.
    -- Nothing else per answer: a fan-out writes thousands a second (the device's platform and
    -- environment are the registry's, or the removal's audit row's).
    apns_id         TEXT,
    attempted_at    BIGINT,
    PRIMARY KEY (notification_id, device_id)
);

-- A device whose send got a transient answer (429, 5xx, no answer) and waits to be sent
-- again with its delivery's next attempt: how many attempts it has had, the first one's time
-- and the last answer. Written only when a delivery goes back to the queue, never per answer
-- on a fan-out's way; read by the status route (owlmetry/store/delivery_status.py), which
-- counts a device's attempts as this row's plus the final one. Removed with its notification.
CREATE TABLE IF NOT EXISTS notification_push_retries (
    notification_id  TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    channel          TEXT NOT NULL,
    platform         TEXT,
    environment      TEXT,
    attempts         INTEGER NOT NULL,
    first_attempt_at BIGINT NOT NULL,
    status           INTEGER,
    reason           TEXT,
    answered_at      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, device_id)
);

-- Why a device is gone: one row per device removed because of a provider's answer (APNs 410
-- or BadDeviceToken, FCM UNREGISTERED, ...), written in the transaction that deletes it. The
-- token only as `token_hint`, its first characters (owlmetry/redact.py). `provider_at` is the
-- provider's own timestamp where it gives one (APNs' 410). Kept RETENTION_DELETED_DAYS.
CREATE TABLE IF NOT EXISTS device_removals (
    device_id       TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    platform        TEXT NOT NULL,
    environment     TEXT NOT NULL,
    token_hint      TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    status          INTEGER,
    reason          TEXT,
    provider_at     BIGINT,
    removed_at      BIGINT NOT NULL
);

-- `owlmetry devices removed --since` and the retention's clean-up.
CREATE INDEX IF NOT EXISTS device_removals_time ON device_removals (removed_at, device_id);

-- Email login codes (POST /v1/auth/send-code, /v1/auth/verify-code), one outstanding per email
-- (owlmetry/login_codes.py). A code is kept as a keyed hash (to check it) and sealed with a key
-- derived from the server's secret (to mail it, and mail it again, later), so a copy of the
-- database does not give codes away. A row stays an hour, then the retention prunes it. Rows
-- are made only for users, or for any email when sign-up is on.
-- The row is also the code's mail queue: `mail_at` is when its next mail is due (NULL: none
-- to send); a worker claims it by moving `mail_at` one lease ahead (`mail_claimed_by`), so a
-- crashed worker's mail is claimed again, and a retry after a backoff is the same column.
CREATE TABLE IF NOT EXISTS login_codes (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,                 -- lower-case
    code_hash  TEXT NOT NULL,                 -- HMAC-SHA256 hex of email and code (login_codes.py)
    attempts   INTEGER NOT NULL DEFAULT 0,    -- verifications tried while it was outstanding
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    code_sealed     TEXT,                     -- AES-GCM hex; NULL on codes made before migration 7
    mail_at         BIGINT,
    mail_claimed_by TEXT,
    mail_attempts   INTEGER NOT NULL DEFAULT 0,  -- sends tried since the last one that went
    mails_sent      INTEGER NOT NULL DEFAULT 0,
    last_mailed_at  BIGINT
);

-- An email's codes (the outstanding one, every verification).
CREATE INDEX IF NOT EXISTS login_codes_email ON login_codes (email, created_at);

-- The clean-up of rows past the window, every email's at once.
CREATE INDEX IF NOT EXISTS login_codes_created ON login_codes (created_at);

-- The mail queue's due rows.
CREATE INDEX IF NOT EXISTS login_codes_mail ON login_codes (mail_at) WHERE mail_at IS NOT NULL;

-- Per-client-address counts of the login routes' requests in the current fixed window
-- (`bucket` is the route and the address, an IPv6 address's /64): one row per bucket, made
-- again when its window has passed; the retention prunes old windows.
CREATE TABLE IF NOT EXISTS login_limits (
    bucket       TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         INTEGER NOT NULL
);

-- Consecutive wrong codes per email (any email, an account's or not, so that the delays they
-- bring tell nobody which emails have accounts). A right code deletes the row; `not_before` is
-- when the next attempt may be checked. At 100 the email is locked until `owlmetry users
-- unlock`; a smaller count is forgotten 30 days after its last failure.
CREATE TABLE IF NOT EXISTS login_failures (
    email          TEXT PRIMARY KEY,          -- lower-case
    failures       INTEGER NOT NULL,
    not_before     BIGINT NOT NULL,
    last_failed_at BIGINT NOT NULL
);

-- Producers' idempotency keys (owlmetry/idempotency.py): per API key, the `Idempotency-Key` of
-- a POST /v1/notifications, the hash of its body, the content id its notifications point at
-- (chosen before any is written, so a retry can tell whom the first attempt reached), and the
-- answer once the request is done. While it is being written, `holder` holds it until
-- `leased_until`; a retry takes it over once that has passed with no answer. Rows live
-- IDEMPOTENCY_KEY_HOURS from `created_at`; the retention prunes them.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    api_key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    content_id      TEXT NOT NULL,
    holder          TEXT NOT NULL,
    leased_until    BIGINT NOT NULL,
    answer          TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idempotency_key)
);

-- The retention's pruning, oldest first.
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
