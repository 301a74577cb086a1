"""The health probe: does the database take a write now? Its part of the store and its SQL.

A probe commits a write to a row of `settings` of its own, so it meets what a real write meets:
a server that is gone or read-only, a disk that is full. On SQLite the row is written with two
pages' worth of text and deleted in the same transaction: the write needs pages the database
does not have free when it is full (`max_page_count`, or a disk that cannot grow the file),
and the commit goes through the write-ahead log like any other; the engine also checks, before
any write, that the path still names the file it opened. Mixed into `Store`, which sets
`self.engine`. Must not cache, time or log: the HTTP layer's health check does.
"""

from owlmetry.store.engine import Engine

PROBE_KEY = "health.probe"

PROBE = {
    "sqlite": [
        """INSERT INTO settings (key, value) VALUES ($1, hex(zeroblob(4096)))
           ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
        "DELETE FROM settings WHERE key = $1",
    ],
    # The last probe's time stays: a committed write like any other (PostgreSQL extends its
    # files, and writes its WAL, whatever the row holds).
    "postgresql": [
        """INSERT INTO settings (key, value) VALUES ($1, CAST(now() AS TEXT))
           ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
    ],
}


class Health:
    engine: Engine

    async def probe_write(self) -> None:
        """Commit a tiny write; DatabaseUnavailable (or any other error) when it cannot be."""
        async with self.engine.transaction() as run:
            for statement in PROBE[self.engine.name]:
                await run(statement, PROBE_KEY)
