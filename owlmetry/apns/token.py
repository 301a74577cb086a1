"""The APNs provider token: one ES256 JWT per signing key, shared by every connection (the
HTTP/2 core's `Authorization` hook: `current` and `expired`).

Owns signing (`kid`, `iss`, `iat`), caching, scheduled renewal inside Apple's 20–60 minute
window and the generation counter that turns many ExpiredProviderToken answers into one
renewal. Must not know about connections, streams or retries.
"""

import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

RENEW_AFTER_S = 45 * 60  # Apple rejects tokens older than 60 min
MIN_AGE_S = 20 * 60  # Apple answers TooManyProviderTokenUpdates to faster rotation


def check_signing_key(key_pem: str) -> None:
    """ValueError saying why `key_pem` cannot sign provider tokens: Apple's .p8 key is an
    unencrypted PEM of an EC P-256 key (ES256). The message quotes none of the key."""
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("not a readable, unencrypted PEM private key (the .p8 file's text, "
                         "-----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----)") from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ValueError("not an EC P-256 key: APNs takes the .p8 signing key from Apple's "
                         "developer account (ES256)")


class ProviderToken:
    def __init__(self, key_id: str, team_id: str, key_pem: str | bytes,
                 renew_after_s: float = RENEW_AFTER_S, clock: Callable[[], float] = time.time):
        if not MIN_AGE_S <= renew_after_s < 60 * 60:
            raise ValueError("renew_after_s must lie in Apple's 20-60 minute window")
        self.key_id = key_id
        self.team_id = team_id
        self._key = key_pem
        self._renew_after_s = renew_after_s
        self._clock = clock
        self.generation = 0
        self.issued_at = 0.0
        self.bearer = b""
        self._sign()

    def _sign(self) -> None:
        now = self._clock()
        token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self._key, algorithm="ES256",
                           headers={"kid": self.key_id})
        self.bearer = b"bearer " + token.encode()
        self.issued_at = now
        self.generation += 1

    def current(self) -> tuple[int, bytes]:
        """(generation, `authorization` header value), renewed when the token grows old."""
        if self._clock() - self.issued_at >= self._renew_after_s:
            self._sign()
        return self.generation, self.bearer

    def expired(self, generation: int) -> None:
        """APNs called token `generation` expired: renew once, however many streams report it.

        This bypasses the 20-minute floor on purpose: APNs already refuses the token, and the
        generation check means one renewal per token, not one per answer.
        """
        if generation == self.generation:
            self._sign()
