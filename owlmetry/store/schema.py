"""The schema and its versions: schema.sql for a new database, ordered migrations for an old one.

`schema.sql` (at the repository's top; inside the package once installed) is the whole schema
of this release, what a new database is made from. `migrations/NNNN_name.sql` are the steps
that bring a database of an earlier release to it, one version each, recorded in
`schema_migrations`; a step whose SQL differs per engine comes as `NNNN_name.sqlite.sql` and
`NNNN_name.postgresql.sql`. Version 1 is the schema releases had before versions were recorded.
`upgrade_script` says what a database at a given version must run; the engines run it, under
their own lock, in one transaction, after `version_of` read the version or said why the
database must be left alone instead (another application's; upgraded by a newer release). This
module imports nothing of the store.
"""

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgresql))?\.sql")
ENGINES = ("sqlite", "postgresql")

VERSION_TABLE = "schema_migrations"
CURRENT_VERSION = f"SELECT max(version) FROM {VERSION_TABLE}"
# A database with this table and no VERSION_TABLE is from a release before versions were
# recorded: it runs every migration, the first again (to fill in anything an older one lacked).
LEGACY_TABLE = "users"
# The columns the first releases gave the two tables another application's database may well
# have too (`users` in most; `schema_migrations` is Rails' and golang-migrate's): a database
# whose table of that name lacks them is not Owlmetry's, and is left as it is.
OWN_COLUMNS = {LEGACY_TABLE: frozenset({"id", "email", "created_at"}),
               VERSION_TABLE: frozenset({"version", "name", "applied_at"})}
# The database's tables, and a table's column names ($1 its name), by engine.
TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
}
TABLE_COLUMNS = {
    "sqlite": "SELECT name FROM pragma_table_info($1)",
    # The catalog, not information_schema, which lists only the columns the role may use.
    "postgresql": """SELECT a.attname FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = $1
  AND a.attnum > 0 AND NOT a.attisdropped""",
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    scripts: dict[str, str]  # by engine name

    def record(self, now_ms: int) -> str:
        return (f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) "
                f"VALUES ({self.version}, '{self.name}', {now_ms});")


def schema_sql() -> str:
    """schema.sql: inside the package once installed (setup.py copies it), else at the
    checkout's top."""
    installed = resources.files("owlmetry").joinpath("schema.sql")
    if installed.is_file():
        return installed.read_text()
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text()


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, oldest first; versions run 1, 2, 3... with no gap."""
    found: dict[int, tuple[str, dict[str, str]]] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = MIGRATION_FILE.fullmatch(entry.name)
        if match is None:
            continue
        version, name, engine = int(match[1]), match[2], match[3]
        first_name, scripts = found.setdefault(version, (name, {}))
        if first_name != name:  # two branches' migrations merged under one number
            raise RuntimeError(f"owlmetry/store/migrations: version {version} is both "
                               f"{first_name!r} and {name!r}")
        for each in (engine,) if engine else ENGINES:
            scripts[each] = entry.read_text()
    ordered = tuple(Migration(v, name, scripts) for v, (name, scripts) in sorted(found.items()))
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected or set(migration.scripts) != set(ENGINES):
            raise RuntimeError(f"owlmetry/store/migrations: version {expected} is missing or "
                               "lacks a script for an engine")
    return ordered


def latest_version() -> int:
    return migrations()[-1].version


async def version_of(engine: str, fetch) -> tuple[int | None, str | None]:
    """The database's version (None: a new one), or why it must be left alone
    (`foreign_tables`, then `too_new`); `fetch(sql, *args)` reads its rows."""
    tables = {name for (name,) in await fetch(TABLES[engine])}
    columns = {table: {name for (name,) in await fetch(TABLE_COLUMNS[engine], table)}
               for table in OWN_COLUMNS if table in tables}
    if refused := foreign_tables(columns):  # before reading a version that may not be ours
        return None, refused
    recorded = (await fetch(CURRENT_VERSION))[0][0] if VERSION_TABLE in tables else None
    version = database_version(tables, recorded)
    return version, too_new(version)


def foreign_tables(columns: dict[str, set[str]]) -> str | None:
    """Why a database whose OWN_COLUMNS tables have these columns (table -> names; the tables
    it has) is another application's, or None."""
    for table, own in OWN_COLUMNS.items():
        if table in columns and not own <= columns[table]:
            missing = ", ".join(sorted(own - columns[table]))
            return (f"this is not an Owlmetry database: its table {table!r} lacks the "
                    f"column(s) {missing}; nothing was changed. Point DATABASE_URL at a new "
                    "database or an Owlmetry one")
    return None


def too_new(version: int | None) -> str | None:
    """Why a database at `version` must not be used by this release (a newer one upgraded
    it), or None."""
    if version is not None and version > latest_version():
        return (f"the database is at schema version {version}, newer than this release's "
                f"({latest_version()}): run the release that upgraded it, or restore the backup "
                "taken before the upgrade")
    return None


def database_version(tables: set[str], recorded: int | None) -> int | None:
    """A database's version from the tables it has and the highest version it recorded:
    None for a new database, 0 for one older than recorded versions."""
    if VERSION_TABLE in tables:
        return recorded or 0
    return 0 if LEGACY_TABLE in tables else None


def upgrade_script(engine: str, version: int | None, now_ms: int) -> str | None:
    """The SQL that brings a database at `version` (None: a new, empty database) to the latest
    version and records it; None when it is there already."""
    if version is None:
        steps, scripts = migrations(), [schema_sql()]
    else:
        steps = [m for m in migrations() if m.version > version]
        scripts = [m.scripts[engine] for m in steps]
    if not steps:
        return None
    # Recorded after every script: the first ones run before the version table exists.
    return "\n".join([*scripts, *(m.record(now_ms) for m in steps)])
