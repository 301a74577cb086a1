-- Placeholder for migration 6, assigned to engineer A (secrets, sessions) on another branch: it keeps this
-- branch's versions gap-free. DELETE THIS FILE when that branch's 0006_*.sql is merged
-- (owlmetry/store/schema.py refuses two migrations of one number, so a forgotten placeholder
-- stops every start instead of hiding the real migration).
SELECT 1;
