-- Placeholder for version 9 (issue 14's rich content, on its own branch), so that version 10
-- has no gap on this branch. Drop this file when merging that branch's migration 9.
SELECT 1;
