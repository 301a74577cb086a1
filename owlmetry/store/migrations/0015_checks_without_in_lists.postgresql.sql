-- Migration 15: the rules of a delivery's status and a push's outcome as comparisons, not
-- `IN (...)` lists, as schema.sql now writes them for SQLite's sake (its migration says why);
-- the same rule, so PostgreSQL's rows pass it as they are.
ALTER TABLE notification_deliveries DROP CONSTRAINT IF EXISTS notification_deliveries_status_check;
ALTER TABLE notification_deliveries ADD CONSTRAINT notification_deliveries_status_check
    CHECK (status = 'pending' OR status = 'sent' OR status = 'failed' OR status = 'skipped');
ALTER TABLE notification_pushes DROP CONSTRAINT IF EXISTS notification_pushes_outcome_check;
ALTER TABLE notification_pushes ADD CONSTRAINT notification_pushes_outcome_check
    CHECK (outcome = 'delivered' OR outcome = 'removed' OR outcome = 'failed'
           OR outcome = 'skipped');
