-- Migration 9: a notification's push options (issue 14's rich content: push type, priority,
-- expiry, collapse id, thread, category, sound, badge...), stored with its content as JSON of
-- the options the producer set (owlmetry.push_options). Every content from before is today's
-- push: NULL.

ALTER TABLE notification_contents ADD COLUMN push_options TEXT;
