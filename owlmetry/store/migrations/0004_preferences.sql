-- Migration 4: each user's notification preferences (and the apps' `ui` settings), the JSON
-- object PATCH /v1/auth/me merges into (owlmetry/preferences.py); NULL: none set, every
-- type's defaults apply.

ALTER TABLE users ADD COLUMN preferences TEXT;
