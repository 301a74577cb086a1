"""The one rule for an email address, wherever one enters (the login routes, `owlmetry users ...`,
`owlmetry notify --user`) or leaves (`mail.py` checks every recipient again).

Accepted: exactly one RFC 5322 addr-spec whose local part is a dot-atom and whose domain is a
host name of at least two labels (letters, digits and inner hyphens, as SMTP's RFC 5321 wants),
in ASCII. Refused on purpose, although RFC 5322 allows them: quoted local parts
(`"a b"@example.com`), domain literals (`a@[192.0.2.1]`), comments, display names and lists:
each is a way for one string to name another mailbox than it seems to (`x,victim@example.com`,
`a<victim@example.com>`, `victim@example.com(1)`), and no real user needs them. Non-ASCII
addresses are refused too (they need SMTPUTF8, which we do not ask of relays).

Owns what is accepted and its canonical form (surrounding white space trimmed, lower-case: users
are found by it). Must not send mail or look anything up.
"""

import re

# RFC 5322 atext: letters, digits and these; a dot-atom is atext runs joined by single dots.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL = rf"{ATEXT}(?:\.{ATEXT})*"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The top-level label has a letter: `a@192.0.2.1` is an address literal in disguise.
DOMAIN = rf"(?:{LABEL}\.)+(?=[A-Za-z0-9-]*[A-Za-z]){LABEL}"
ADDR_SPEC = re.compile(rf"({LOCAL})@({DOMAIN})")
MAX_LENGTH = 254  # RFC 5321's path limit, less the angle brackets
MAX_LOCAL_LENGTH = 64


def is_address(text: str) -> bool:
    """True when `text`, exactly as given, is one acceptable address (no trimming)."""
    match = ADDR_SPEC.fullmatch(text)
    return (match is not None and len(text) <= MAX_LENGTH
            and len(match.group(1)) <= MAX_LOCAL_LENGTH)


def normalize_email(text: str) -> str:
    """`text` trimmed and lower-cased; ValueError when it is not exactly one address."""
    email = text.strip().lower()
    if not is_address(email):
        raise ValueError(f"not a valid email address (exactly one, such as alice@example.com): "
                         f"{text!r}")
    return email
