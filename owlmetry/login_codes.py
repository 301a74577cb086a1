"""What an email login code is: six digits drawn uniformly, kept only as a keyed hash, and the
limits that go with it (lifetime, codes per hour, attempts).

Owns the code's shape, its hash and those numbers. Must not touch HTTP, mail or the database:
the routes (`http/login.py`) apply the rules through the store.
"""

import hashlib
import hmac
import secrets

CODE_DIGITS = 6
CODE_TTL_MS = 10 * 60 * 1000
# At most CODES_PER_WINDOW codes per email per WINDOW_MS, used or not.
WINDOW_MS = 60 * 60 * 1000
CODES_PER_WINDOW = 5
# Attempts, right or wrong, each outstanding code of an email survives: the fifth wrong code
# voids it, so guessing is capped at MAX_ATTEMPTS * CODES_PER_WINDOW tries an hour per email.
MAX_ATTEMPTS = 5


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def is_code(text: str) -> bool:
    return len(text) == CODE_DIGITS and text.isascii() and text.isdigit()


class CodeHasher:
    """HMAC-SHA256 of email and code under a key derived from the server's JWT secret.

    A bare hash of one of 10^6 codes is undone by trying them all; without the key there is
    nothing to try. The key is derived (not the JWT secret itself) so that the two uses never
    meet. Changing JWT_SECRET voids the codes outstanding, as it voids sessions.
    """

    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode(), b"owlmetry login code", hashlib.sha256).digest()

    def hash(self, email: str, code: str) -> str:
        message = f"{email.lower()}\n{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
