"""Vacuuming the tables whose rows die faster than autovacuum comes by (PostgreSQL).

PostgreSQL keeps a deleted row's old version, and its index entries, until a VACUUM; by
default autovacuum looks at a database once a minute and takes a table once a fifth of it is
dead. A registry at its device cap deletes a device for every new token: 2,800 new tokens a
second left 115,000 dead rows beside 10,500 live ones within two minutes, every registration's
walk of its user's devices stepped over them, and new tokens fell from 3,634 to 1,564 a second
(benchmarks/RESULTS.md, session 23). So each server process asks, every second or so
(`owlmetry.vacuuming`), which of `CHURNING_TABLES` holds more dead rows than
`MIN_DEAD_ROWS` plus `DEAD_FRACTION` of its live ones, and vacuums those itself. A table
another process (or autovacuum) is vacuuming is skipped, not waited for (SKIP_LOCKED).
SQLite reuses a deleted row's room at once: nothing to do there.

Mixed into `Store`, which sets `self.engine`. Must not decide when to look (the job does).
"""

from owlmetry.store.engine import Engine

# The tables whose rows a busy server replaces many times a second: the registry (devices
# evicted past the cap, removed for dead tokens, taken over by another user: each leaves a dead
# version). The work queue's are walked by plain index scans, which skip dead entries once
# seen: vacuuming it too changed nothing (benchmarks/RESULTS.md, session 23).
CHURNING_TABLES = ("user_devices",)
MIN_DEAD_ROWS = 1_000
DEAD_FRACTION = 0.1

# PostgreSQL's own counts, a few seconds behind the writes; $1 the tables.
OVERGROWN = """
SELECT relname FROM pg_stat_user_tables
WHERE schemaname = current_schema() AND relname = ANY($1::text[])
  AND n_dead_tup > $2::bigint + $3::float8 * n_live_tup
ORDER BY relname
"""


class Vacuuming:
    engine: Engine

    async def vacuum_overgrown(self, min_dead_rows: int = MIN_DEAD_ROWS,
                               dead_fraction: float = DEAD_FRACTION) -> list[str]:
        """Vacuum each churning table with more than `min_dead_rows` + `dead_fraction` x its
        live rows dead; those tables, by name (each vacuumed, or skipped while another process
        vacuums it). SQLite: none."""
        if self.engine.name != "postgresql":
            return []
        overgrown = [name for (name,) in await self.engine.read_bulk(
            OVERGROWN, list(CHURNING_TABLES), min_dead_rows, dead_fraction)]
        for table in overgrown:
            # Not a transaction's statement (VACUUM cannot be one): the engine's plain write.
            await self.engine.write_bulk(f"VACUUM (SKIP_LOCKED) {table}")
        return overgrown
