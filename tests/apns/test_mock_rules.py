"""The mock's verdicts: Apple's rules first, then the faults it was told to inject, one typed
`Verdict` for every request."""

import argparse
import hashlib
import time
from collections import Counter

import jwt
import pytest

from owlmetry.apns.mock import MockBehaviour, TokenFault, Verdict, cli, rules
from owlmetry.apns.mock.faults import apply, share

from .conftest import token
from .identity import KEY_ID, TEAM_ID


def request(path=None, method=b"POST", **extra):
    headers = {b":method": method, b":path": path or b"/3/device/" + token(1).encode(),
               b"apns-topic": b"com.example.app", b"apns-push-type": b"alert"}
    headers.update({name.replace("_", "-").encode(): value for name, value in extra.items()})
    return headers


def test_address_rules():
    assert rules.check_address(request(method=b"GET")) == Verdict(405, "MethodNotAllowed")
    assert rules.check_address(request(b"/3/other/ab")) == Verdict(404, "BadPath")
    for bad in (b"xyz", b"ab" * 7, b"ab" * 101, b"\xff" * 32):
        assert rules.check_address(request(b"/3/device/" + bad)) == Verdict(400, "BadDeviceToken")
    assert rules.check_address(request()).accepted


def test_request_rules():
    body = b'{"aps":{}}'
    assert rules.check_request(request(), body, None) == Verdict(200, payload={"aps": {}})
    assert rules.check_request(request(apns_topic=b""), body, None).reason == "MissingTopic"
    assert rules.check_request(request(apns_push_type=b"x"), body, None).reason == "InvalidPushType"
    assert rules.check_request(request(), body, "com.other").reason == "TopicDisallowed"
    assert rules.check_request(request(apns_priority=b"7"), body, None).reason == "BadPriority"
    assert rules.check_request(request(), b"", None).reason == "PayloadEmpty"
    assert rules.check_request(request(), b"[1]", None).reason == "BadPayload"
    big = b'{"a":"' + b"x" * 4100 + b'"}'
    assert rules.check_request(request(), big, None) == Verdict(413, "PayloadTooLarge")
    assert rules.check_request(request(apns_push_type=b"voip"), big, None).accepted


def test_provider_token_rule(auth_key):
    verified = []
    rule = rules.ProviderTokenRule(auth_key, KEY_ID, TEAM_ID, verified.append)
    good = jwt.encode({"iss": TEAM_ID, "iat": int(time.time())}, auth_key, algorithm="ES256",
                      headers={"kid": KEY_ID}).encode()
    wrong_team = jwt.encode({"iss": "OTHER", "iat": int(time.time())}, auth_key, algorithm="ES256",
                            headers={"kid": KEY_ID}).encode()
    assert rule.check(None) == Verdict(403, "MissingProviderToken")
    assert rule.check(b"bearer " + wrong_team) == Verdict(403, "InvalidProviderToken")
    assert rule.check(b"bearer " + good).accepted and rule.check(b"bearer " + good).accepted
    assert verified == [good]  # verified once
    rule.expire_all()
    assert rule.check(b"bearer " + good) == Verdict(403, "ExpiredProviderToken")


def test_faults_replace_an_accepted_verdict_and_are_used_up():
    accepted = Verdict(200, payload={})
    behaviour = MockBehaviour(bad_tokens={"a"}, unregistered={"b": 7}, reset_tokens={"c": 1},
                              token_faults={"d": TokenFault(503, "ServiceUnavailable", 1)})
    assert apply(behaviour, "a", accepted) == Verdict(400, "BadDeviceToken")
    assert apply(behaviour, "b", accepted) == Verdict(410, "Unregistered", {"timestamp": 7})
    assert apply(behaviour, "c", accepted).reset
    assert apply(behaviour, "c", accepted) is accepted
    assert apply(behaviour, "d", accepted) == Verdict(503, "ServiceUnavailable")
    assert apply(behaviour, "d", accepted) is accepted
    behaviour.error_probability = {429: 1.0}
    assert apply(behaviour, "e", accepted) == Verdict(429, "TooManyRequests")


def test_shares_of_failures_and_dead_tokens_are_fixed_by_the_seed_not_the_order():
    accepted = Verdict(200, payload={})
    behaviour = MockBehaviour(error_probability={429: 0.05, 503: 0.05}, dead_share=0.1,
                              dead_since_ms=5, seed=7)
    tokens = [token(i) for i in range(20_000)]
    forward = [apply(behaviour, t, accepted, 1) for t in tokens]
    backward = [apply(behaviour, t, accepted, 1) for t in reversed(tokens)][::-1]
    assert forward == backward
    statuses = Counter(v.status for v in forward)
    assert 0.09 < statuses[410] / len(tokens) < 0.11
    assert all(v.extra == {"timestamp": 5} for v in forward if v.status == 410)
    assert {t for t, v in zip(tokens, forward) if v.status == 410} == {
        t for t in tokens if behaviour.is_dead(t)}
    # 429 and 503 each at 5% of the live tokens' requests; a second request draws again.
    live = len(tokens) - statuses[410]
    assert 0.04 < statuses[429] / live < 0.06 and 0.04 < statuses[503] / live < 0.06
    again = [apply(behaviour, t, accepted, 2) for t, v in zip(tokens, forward) if v.status == 429]
    assert sum(v.status == 429 for v in again) < len(again) / 4
    other_seed = MockBehaviour(dead_share=0.1, seed=8)
    assert {t for t in tokens if other_seed.is_dead(t)} != {t for t in tokens
                                                            if behaviour.is_dead(t)}


def test_the_draws_are_the_same_from_one_version_to_the_next():
    # Benchmarks compare faulty runs across versions: the hostile run's 1,972 dead tokens of
    # 20,000 (seed 1) are these only while the draw is this hash.
    for seed, tok, n in ((0, token(1), -1), (1, token(5), 3), (7, "ab" * 32, 12)):
        digest = hashlib.blake2b(f"{seed}/{tok}/{n}".encode(), digest_size=8).digest()
        assert share(seed, tok, n) == int.from_bytes(digest) / 2**64
    hostile = MockBehaviour(dead_share=0.1, seed=1)
    assert sum(hostile.is_dead("a" + format(i, "x").rjust(63, "0")) for i in range(20_000)) == 1972


def test_a_dead_token_without_a_given_time_says_it_died_now():
    behaviour = MockBehaviour(dead_share=1.0)
    before = int(time.time() * 1000)
    verdict = apply(behaviour, token(1), Verdict(200, payload={}))
    assert verdict.status == 410 and before <= verdict.extra["timestamp"] <= time.time() * 1000


def test_the_command_line_reads_a_stream_limit_schedule():
    assert cli._schedule("6000:1000,5000:1") == [(5000, 1), (6000, 1000)]
    for bad in ("5000", "5000:0", "a:b", "1:2:3"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._schedule(bad)
