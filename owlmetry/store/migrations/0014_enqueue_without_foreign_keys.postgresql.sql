-- Migration 14: the enqueue's rows lose the foreign keys their one writer already guarantees.
-- A fan-out's chunk of 500 recipients ran 1,500 key checks (each a query under a row lock)
-- after a statement that had joined `users` and written the notifications itself: a third of
-- its time. The enqueue now locks each recipient's user row in its join (so a user's deletion
-- waits for a chunk under way, or the chunk skips a user deleted first), and the deletion of a
-- user (`Store.delete_user`) or of a notification (the retention) removes the rows that
-- pointed at it in the same transaction.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_user_id_fkey;
ALTER TABLE unread_counts DROP CONSTRAINT IF EXISTS unread_counts_user_id_fkey;
ALTER TABLE notification_deliveries
    DROP CONSTRAINT IF EXISTS notification_deliveries_notification_id_fkey;
