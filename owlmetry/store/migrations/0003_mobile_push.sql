-- Migration 3: today's Owlmetry device model (upstream's migration 0045, `mobile_push`).
--
-- A device says which platform it is: every device registered so far came through the seed's
-- `ios_push`, so it is an iOS device. The DEFAULT stays (also in schema.sql): both engines can
-- add a NOT NULL column only with one, SQLite cannot drop it again without rebuilding the
-- table, and a new database must have the same shape as an upgraded one. No CHECK on the
-- values: the Devices API validates them, and a later platform must not need a table rebuild.
ALTER TABLE user_devices ADD COLUMN platform TEXT NOT NULL DEFAULT 'ios';

-- Pushes now go out on one delivery channel, `mobile_push`, whatever the device's platform;
-- pending work of the old name carries on under the new one. Devices keep the `channel` they
-- registered with (`ios_push` stays a valid registration).
UPDATE notification_deliveries SET channel = 'mobile_push' WHERE channel = 'ios_push';
UPDATE notification_pushes SET channel = 'mobile_push' WHERE channel = 'ios_push';
