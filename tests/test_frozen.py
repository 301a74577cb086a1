"""`quick_init`: the classes it speeds up stay the frozen dataclasses they were."""

import dataclasses

import pytest

from owlmetry.frozen import quick_init
from owlmetry.store import PushOutcome, PushRecord


def test_a_record_built_quickly_is_the_same_frozen_record():
    record = PushRecord("n1", "d1", "mobile_push", PushOutcome.DELIVERED, 200, None,
                        apns_id="a1")

    assert (record.notification_id, record.status, record.apns_id) == ("n1", 200, "a1")
    assert record.invalid_since is None and record.attempted_at is None  # the defaults
    assert record == PushRecord(notification_id="n1", device_id="d1", channel="mobile_push",
                                outcome=PushOutcome.DELIVERED, status=200, reason=None,
                                apns_id="a1")
    assert hash(record) == hash(dataclasses.replace(record))
    assert dataclasses.replace(record, status=410).status == 410
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = 410
    with pytest.raises(TypeError):
        PushRecord("n1", "d1")  # fields without a default are still required


def test_classes_it_cannot_build_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        a: list = dataclasses.field(default_factory=list)

    for cls in (Unslotted, WithFactory):
        with pytest.raises(TypeError):
            quick_init(cls)
