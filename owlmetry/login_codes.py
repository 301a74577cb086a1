"""What an email login code is and the rules around it: six digits drawn uniformly, kept as a
keyed hash (to check) and sealed (to mail, and mail again, later), one outstanding code per
email, its lifetime and re-sends, the per-client-address limits of the two routes, and the
growing delays after wrong codes.

Owns the code's shape, its hash and seal, and those numbers and schedules. Must not touch HTTP,
mail or the database: the routes (`http/login.py`) and the mail queue (`login_mail.py`) apply
the rules through the store.

The rules, and why:
- One code per email at a time. Asking again while it is outstanding (unexpired, unused) mails
  the same code again rather than a new one: every mail the person finds works, and a stranger
  asking for codes for them spends nothing of theirs. A re-send goes at most once a minute and
  a code is mailed at most MAX_MAILS times, so asking cannot flood a mailbox.
- Wrong codes count per email, not per code: the first FREE_FAILURES cost nothing, then each
  further one makes the next attempt wait (1 s, doubling, at most an hour; 100 failures take
  about 84 hours), and at MAX_FAILURES consecutive failures (NIST SP 800-63B's most) no code is
  accepted until the operator runs `owlmetry users unlock EMAIL`. A right code resets the count.
  Failures count for any email, an account's or not, so the delays tell nobody which exist.
- Per client address (IPv6: per /64, what one host usually holds): SENDS_PER_ADDRESS
  send-codes and VERIFIES_PER_ADDRESS verify-codes per ADDRESS_WINDOW_MS (operators change the
  counts with LOGIN_SENDS_PER_ADDRESS / LOGIN_VERIFIES_PER_ADDRESS).
"""

import hashlib
import hmac
import ipaddress
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CODE_DIGITS = 6
CODE_TTL_MS = 10 * 60 * 1000
# A code's row is kept this long after it was made (then the retention prunes it).
WINDOW_MS = 60 * 60 * 1000

RESEND_AFTER_MS = 60 * 1000
MAX_MAILS = 3

FREE_FAILURES = 5
MAX_FAILURES = 100
FIRST_DELAY_MS = 1000
MAX_DELAY_MS = 60 * 60 * 1000
# A failure count below MAX_FAILURES is forgotten this long after its last failure.
FAILURES_KEPT_MS = 30 * 24 * 60 * 60 * 1000

ADDRESS_WINDOW_MS = 15 * 60 * 1000
SENDS_PER_ADDRESS = 10
VERIFIES_PER_ADDRESS = 30

# The mail queue: a claim's lease, and the backoff of a mail the relay turned away for now.
MAIL_LEASE_MS = 60 * 1000
MAIL_RETRY_BASE_S = 5.0
MAIL_RETRY_CAP_S = 300.0


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def is_code(text: str) -> bool:
    return len(text) == CODE_DIGITS and text.isascii() and text.isdigit()


def delay_after(failures: int) -> int | None:
    """How long (ms) after the `failures`-th consecutive failure the next attempt must wait;
    None: locked (no attempt is checked any more)."""
    if failures >= MAX_FAILURES:
        return None
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (failures - FREE_FAILURES))


def address_bucket(route: str, address: str | None) -> str:
    """The key the per-address limit counts `route`'s requests from `address` under."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return f"{route}:{address}"  # not an IP (a Unix socket): one bucket for it all
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{route}:{ip.ipv4_mapped}"
        return f"{route}:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"{route}:{ip}"


class CodeHasher:
    """The server's keyed work on codes: an HMAC-SHA256 of email and code (to check one), and an
    AES-GCM seal of the code (so the mail queue, and a re-send, can mail it later).

    A bare hash of one of 10^6 codes is undone by trying them all; without the key there is
    nothing to try, and a sealed code cannot be opened. The keys are derived from the server's
    JWT secret (not the secret itself, and one per use) so that the uses never meet. Changing
    JWT_SECRET voids the codes outstanding, as it voids sessions.
    """

    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode(), b"owlmetry login code", hashlib.sha256).digest()
        self._seal = AESGCM(hmac.new(secret.encode(), b"owlmetry login code seal",
                                     hashlib.sha256).digest())

    def hash(self, email: str, code: str) -> str:
        message = f"{email.lower()}\n{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def seal(self, code_id: str, email: str, code: str) -> str:
        """The code encrypted, bound to its row (id and email): hex of nonce and ciphertext."""
        nonce = os.urandom(12)
        return (nonce + self._seal.encrypt(nonce, code.encode(), self._bound(code_id, email))).hex()

    def unseal(self, code_id: str, email: str, sealed: str) -> str:
        """The code back; ValueError when `sealed` is not this server's seal of that row's code."""
        data = bytes.fromhex(sealed)
        try:
            return self._seal.decrypt(data[:12], data[12:], self._bound(code_id, email)).decode()
        except Exception as exc:  # InvalidTag: another secret, or a row that was tampered with
            raise ValueError("the sealed code does not open with this server's key") from exc

    @staticmethod
    def _bound(code_id: str, email: str) -> bytes:
        return f"{code_id}\n{email.lower()}".encode()
