-- Migration 13 (to follow issue 14's 0013 as 14): the inbox index keeps each user's unread
-- rows apart from the read ones, so the unread list and mark-all-read read only the unread
-- rows of an inbox however big it is (they walked it newest first down to its oldest unread
-- row). Rebuilt from the table: on a big notifications table this takes a while, in the
-- migration's transaction.
DROP INDEX IF EXISTS notifications_inbox;
CREATE INDEX IF NOT EXISTS notifications_inbox
    ON notifications (user_id, (read_at IS NULL), created_at DESC, id DESC) WHERE deleted_at IS NULL;
