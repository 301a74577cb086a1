"""The one rule for a push device's token, per platform, wherever a token enters (the Devices API).

Owns what is accepted and its canonical form, the form the registry keys devices by (the token
is unique across platforms). Must not send anything or look anything up: reaching a device is
the `mobile_push` channel's job.
"""

import re

from owlmetry.apns.wire import is_device_token
from owlmetry.store import Platform

# FCM documents no format for a registration token, and Google's engineers ask servers not to
# check one ("the format may change"); tokens seen in practice are about 140-200 characters of
# URL-safe base64 with a ':' separator, and the Firebase Installation IDs that FCM is moving to
# are 22 characters of the same alphabet. So: URL-safe characters ('.' allowed too), 1 to
# 2048 (ten times the longest seen; the 4096 Google once gave for a registration id is more
# than a PostgreSQL index entry holds, 2,704 bytes, and such a token failed there with a
# database error), case kept as sent, since base64 is case-sensitive. This keeps out only
# what no FCM token has been: white space, control characters, quotes, non-ASCII, and sizes no
# index should hold.
FCM_TOKEN_MAX = 2048
FCM_TOKEN = re.compile(rf"[A-Za-z0-9_:.\-]{{1,{FCM_TOKEN_MAX}}}")


def apns_token(token: str) -> str:
    if not is_device_token(token):
        raise ValueError("token must be a hexadecimal APNs device token of even length, "
                         "16 to 200 characters")
    return token.lower()  # APNs tokens are hex: the same token in any case is one device


def fcm_token(token: str) -> str:
    if not FCM_TOKEN.fullmatch(token):
        raise ValueError(f"token must be an FCM registration token: 1 to {FCM_TOKEN_MAX} "
                         "characters of A-Z, a-z, 0-9, '_', ':', '.' and '-'")
    return token


TOKEN_RULES = {Platform.IOS: apns_token, Platform.ANDROID: fcm_token}


def normalize_token(platform: Platform, token: str) -> str:
    """The canonical form of a `platform` device token; ValueError says what is wrong."""
    return TOKEN_RULES[platform](token)
