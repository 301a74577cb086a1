"""Print owlmetry's requirements (and its `test` extra's) pinned to their floors, for pip -r.

Reads the metadata of the installed owlmetry (setup.py's install_requires and extras_require,
as pip recorded them), so the pins always follow setup.py. Every requirement must have a
floor (`>=X` or `==X`): one without cannot be tested at its lowest, so it is an error.
Only the standard library: it runs in a venv that holds nothing but owlmetry itself.
"""

import re
import sys
from importlib.metadata import requires

EXTRAS = {"test"}  # `build` is a subset of `test` (shiv)
# `extra == "test"` with the `and` that joins it to the rest of a marker, on either side.
EXTRA_CLAUSE = re.compile(
    r"""\s+and\s+extra\s*==\s*["']([^"']+)["']|extra\s*==\s*["']([^"']+)["'](?:\s+and\s+)?""")
FLOOR = re.compile(r"(?:>=|==)\s*([0-9][^,;\s]*)")


def pinned(requirement: str) -> str | None:
    """`h2<4.5,>=4.4` -> `h2==4.4`; markers other than `extra == ...` are kept; None for a
    requirement of an extra not in EXTRAS."""
    spec, _, marker = requirement.partition(";")
    extra = EXTRA_CLAUSE.search(marker)
    if extra and (extra[1] or extra[2]) not in EXTRAS:
        return None
    marker = EXTRA_CLAUSE.sub("", marker).strip()
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())[0]
    floor = FLOOR.search(spec)
    if floor is None:
        sys.exit(f"lowest_pins: {requirement!r} has no floor (>=X) to test")
    return f"{name}=={floor[1]}" + (f"; {marker}" if marker else "")


def main() -> None:
    pins = dict.fromkeys(p for p in map(pinned, requires("owlmetry") or ()) if p)
    print("\n".join(pins))


if __name__ == "__main__":
    main()
