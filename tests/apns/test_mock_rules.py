"""The mock's verdicts: Apple's rules first, then the faults it was told to inject, one typed
`Verdict` for every request."""

import random
import time

import jwt

from owlmetry.apns.mock import MockBehaviour, TokenFault, Verdict, rules
from owlmetry.apns.mock.faults import apply

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
    chance = random.Random(0)
    assert apply(behaviour, "a", accepted, chance) == Verdict(400, "BadDeviceToken")
    assert apply(behaviour, "b", accepted, chance) == Verdict(410, "Unregistered",
                                                              {"timestamp": 7})
    assert apply(behaviour, "c", accepted, chance).reset
    assert apply(behaviour, "c", accepted, chance) is accepted
    assert apply(behaviour, "d", accepted, chance) == Verdict(503, "ServiceUnavailable")
    assert apply(behaviour, "d", accepted, chance) is accepted
    behaviour.error_probability = {429: 1.0}
    assert apply(behaviour, "e", accepted, chance) == Verdict(429, "TooManyRequests")
