"""The one rule for an email address, wherever one enters (login routes, `owlmetry users ...`).

Owns what is accepted and its canonical form (trimmed, lower-case: users are found by it).
Must not send mail or look anything up.
"""

import re

# No white space or control characters, which would have no business in a mail header.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
MAX_LENGTH = 254


def normalize_email(text: str) -> str:
    """`text` trimmed and lower-cased; ValueError when it is not one email address."""
    email = text.strip().lower()
    if len(email) > MAX_LENGTH or not EMAIL.fullmatch(email):
        raise ValueError(f"not a valid email address: {text!r}")
    return email
