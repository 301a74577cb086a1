"""The unread counter: each user's count of notifications that are unread and not deleted.

Owns the counter's statements and its one rule (`UNREAD`). The badge of every push and
GET /v1/notifications/unread-count read the counter instead of counting the inbox, so their cost
does not grow with it. Every statement that adds a notification, or changes or removes one in a
way that `UNREAD` sees, runs one of these in the same transaction (or statement): the enqueue
(`deliveries`), set-read, mark-all-read and delete (`inbox`). The retention's clean-up changes
nothing the rule sees: it soft-deletes read rows and removes soft-deleted ones. A user without
a row has zero. Must not be called on its own: a count changed outside its row's change drifts.
"""

# A notification the counter counts: the badge's and the unread list's rule.
UNREAD = "read_at IS NULL AND deleted_at IS NULL"

# Add $2 (negative: take away) to user $1's count.
ADD_UNREAD = """
INSERT INTO unread_counts (user_id, unread) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET unread = unread_counts.unread + excluded.unread
"""

# A user's count, if the user has a row.
UNREAD_OF = "SELECT unread FROM unread_counts WHERE user_id = $1"

# The badge inside a query of notifications `n`.
BADGE = "COALESCE((SELECT c.unread FROM unread_counts AS c WHERE c.user_id = n.user_id), 0)"


def count_added(rows: str) -> str:
    """Adds the unread rows of `rows` (user_id, read_at, deleted_at), new notifications, to
    their users' counts. In user order, so that concurrent enqueues lock the counts one after
    the other instead of each holding some that another waits for (PostgreSQL)."""
    return f"""
INSERT INTO unread_counts (user_id, unread)
SELECT user_id, count(*) FROM {rows}
WHERE {UNREAD}
GROUP BY user_id
ORDER BY user_id
ON CONFLICT (user_id) DO UPDATE SET unread = unread_counts.unread + excluded.unread"""
