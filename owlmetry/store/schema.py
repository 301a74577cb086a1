"""The schema: schema.sql's text, its digest, and the statements that read and record which
version a database has.

The engines run the migration (each its own way of running a script under a lock); this module
only finds and names the schema. It imports nothing of the store.
"""

import functools
import hashlib
from importlib import resources
from pathlib import Path

# The digest of the schema a database was last migrated to, kept in `settings`.
SCHEMA_DIGEST = "SELECT value FROM settings WHERE key = 'schema_sha256'"

SET_SCHEMA_DIGEST = """
INSERT INTO settings (key, value) VALUES ('schema_sha256', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


def schema_sql() -> str:
    """schema.sql: inside the package once installed (setup.py copies it), else at the checkout's top."""
    installed = resources.files("owlmetry").joinpath("schema.sql")
    if installed.is_file():
        return installed.read_text()
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text()


@functools.cache
def schema_digest() -> str:
    """Names the schema version: a database whose stored digest matches needs no migration."""
    return hashlib.sha256(schema_sql().encode()).hexdigest()
