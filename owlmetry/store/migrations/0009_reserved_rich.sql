-- PLACEHOLDER for another branch's migration (issue 14): drop this file at the merge.
SELECT 1;
