"""The token rule of each platform: what the Devices API accepts and the form it keys devices by."""

import pytest

from owlmetry.device_tokens import normalize_token
from owlmetry.store import Platform

# The shape FCM registration tokens have had in practice (~150 characters, a ':' separator).
FCM_LIKE = "dQw4w9WgXcQ:APA91bH" + "x-_Y" * 32
FID_LIKE = "cR_6PzH7Qk2-Vq9aB3sT1w"  # a Firebase Installation ID: 22 characters


@pytest.mark.parametrize("token,valid", [
    ("AB" * 8, True), ("ab" * 100, True), ("ab" * 7, False), ("ab" * 101, False),
    ("abc", False), ("zz" * 16, False), ("ab " * 16, False),
])
def test_ios_tokens_are_even_length_hex_16_to_200_and_kept_lower_case(token, valid):
    if valid:
        assert normalize_token(Platform.IOS, token) == token.lower()
    else:
        with pytest.raises(ValueError, match="APNs device token"):
            normalize_token(Platform.IOS, token)


@pytest.mark.parametrize("token", [FCM_LIKE, FID_LIKE, "a", "x" * 2048, "AbC.d-e_f:g", "ab" * 32])
def test_android_tokens_are_url_safe_text_kept_as_sent(token):
    assert normalize_token(Platform.ANDROID, token) == token


@pytest.mark.parametrize("token", ["", "x" * 2049, "has space", "tab\there", "new\nline",
                                   "quote\"d", "slash/", "plus+", "ünïcode", "a\x00b"])
def test_android_tokens_refuse_what_no_fcm_token_has_been(token):
    with pytest.raises(ValueError, match="FCM registration token"):
        normalize_token(Platform.ANDROID, token)
