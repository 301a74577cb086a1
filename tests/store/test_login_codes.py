"""The store's login-code and login-user methods, on a real SQLite file and a real PostgreSQL
database: asking (one outstanding code, re-sends, no rows for strangers), the per-address
counts, attempts (single use, failures and their waits, the lock), the mail queue's claims and
leases, and clean-up, also under races."""

import asyncio
import contextlib
import uuid

from owlmetry import login_codes
from owlmetry.store import User
from owlmetry.store.login_codes import Attempt, AttemptResult

HOUR = 60 * 60 * 1000
TTL = 10 * 60 * 1000
MINUTE = 60 * 1000
WINDOW = 15 * MINUTE
T0 = 1_700_000_000_100 - 1_700_000_000_100 % WINDOW  # a window's start


async def ask(store, email, code_hash="h", now=T0, *, signup=True, bucket="send:192.0.2.1",
              limit=1000):
    return await store.ask_login_code(
        email, bucket, str(uuid.uuid4()), code_hash, f"sealed-{code_hash}", now, now + TTL,
        signup=signup, window_ms=WINDOW, limit=limit, resend_before=now - MINUTE, max_mails=3)


async def attempt(store, email, code_hash, now=T0 + 1, *, bucket="verify:192.0.2.1",
                  limit=1000, delay_after=login_codes.delay_after):
    return await store.try_login_code(email, bucket, code_hash, now, window_ms=WINDOW,
                                      limit=limit, delay_after=delay_after)


ACCEPTED, REFUSED = AttemptResult(Attempt.ACCEPTED), AttemptResult(Attempt.REFUSED)


async def rows(store, table="login_codes"):
    return await store.execute(f"SELECT * FROM {table}")


async def codes(store, email):
    return await store.execute(
        "SELECT code_hash, mail_at, mails_sent FROM login_codes WHERE email = $1 "
        "ORDER BY created_at", email)


async def claim(store, worker="w1", now=T0, limit=10):
    return await store.claim_login_mail(worker, now, now + MINUTE, limit)


# ---- Asking -----------------------------------------------------------------------------------


async def test_an_unknown_email_gets_no_row_unless_anyone_may_sign_up(store):
    assert await ask(store, "stranger@example.com", signup=False) == 0
    assert await rows(store) == []
    await store.create_user(str(uuid.uuid4()), "Known@Example.com", T0)
    assert await ask(store, "known@EXAMPLE.com", signup=False) == 0
    assert await codes(store, "known@example.com") == [("h", T0, 0)]
    assert await ask(store, "new@example.com", signup=True) == 0
    assert await codes(store, "new@example.com") == [("h", T0, 0)]


async def test_asking_runs_the_same_statements_for_users_and_strangers(store, monkeypatch):
    # The same work whoever asks (so its time tells nothing): every statement of the ask's
    # transaction, in order, with a user's email and with a stranger's.
    statements = []
    transaction = store.engine.transaction

    @contextlib.asynccontextmanager
    async def recorded():
        async with transaction() as run:
            async def run_and_record(sql, *params):
                statements.append(sql)
                return await run(sql, *params)
            yield run_and_record

    monkeypatch.setattr(store.engine, "transaction", recorded)
    await store.create_user(str(uuid.uuid4()), "known@example.com", T0)
    seen = {}
    for email in ("known@example.com", "stranger@example.com"):
        statements.clear()
        assert await ask(store, email, signup=False) == 0
        seen[email] = list(statements)
    assert seen["known@example.com"] == seen["stranger@example.com"]
    assert len(seen["known@example.com"]) >= 3
    assert len(await codes(store, "known@example.com")) == 1
    assert await codes(store, "stranger@example.com") == []


async def test_one_outstanding_code_per_email_mailed_again_at_most_once_a_minute(store):
    assert await ask(store, "a@example.com", "first") == 0
    (mail,) = await claim(store)
    assert (mail.email, mail.sealed, mail.attempt) == ("a@example.com", "sealed-first", 1)
    await store.login_mail_sent(mail.code_id, "w1", T0)
    # Asked again within the minute: nothing new, nothing to mail.
    assert await ask(store, "a@example.com", "second", now=T0 + MINUTE - 1) == 0
    assert await codes(store, "a@example.com") == [("first", None, 1)]
    # A minute on, the same code is due again, twice more at most.
    for sent in (2, 3):
        now = T0 + (sent - 1) * MINUTE
        assert await ask(store, "a@example.com", "other", now=now) == 0
        assert await codes(store, "a@example.com") == [("first", now, sent - 1)]
        (mail,) = await claim(store, now=now)
        await store.login_mail_sent(mail.code_id, "w1", now)
    assert await ask(store, "a@example.com", "other", now=T0 + 5 * MINUTE) == 0
    assert await codes(store, "a@example.com") == [("first", None, 3)]
    # Once it is used (or expired) a new code is made.
    assert await attempt(store, "a@example.com", "first", now=T0 + 5 * MINUTE) == ACCEPTED
    assert await ask(store, "a@example.com", "new", now=T0 + 6 * MINUTE) == 0
    assert [h for h, _, _ in await codes(store, "a@example.com")] == ["first", "new"]
    assert await ask(store, "a@example.com", "newer", now=T0 + 6 * MINUTE + TTL) == 0
    assert [h for h, _, _ in await codes(store, "a@example.com")] == ["first", "new", "newer"]


async def test_concurrent_asks_make_one_code(store):
    await asyncio.gather(*(ask(store, "race@example.com", f"h{i}") for i in range(20)))
    assert len(await codes(store, "race@example.com")) == 1


async def test_the_address_count_is_per_bucket_and_window(store):
    for _ in range(3):
        assert await ask(store, "a@example.com", limit=3) == 0
    assert await ask(store, "a@example.com", now=T0 + 10, limit=3) == WINDOW - 10
    assert await ask(store, "a@example.com", bucket="send:192.0.2.2", limit=3) == 0
    assert await ask(store, "a@example.com", now=T0 + WINDOW, limit=3) == 0  # a new window
    results = await asyncio.gather(*(ask(store, f"{i}@example.com", bucket="send:race", limit=5)
                                     for i in range(12)))
    assert sorted(results) == [0] * 5 + [WINDOW] * 7


# ---- Attempts ---------------------------------------------------------------------------------


async def test_a_code_is_used_once_and_only_before_it_expires(store):
    await ask(store, "a@example.com", code_hash="right")
    assert await attempt(store, "a@example.com", "right", now=T0 + TTL) == REFUSED  # expired
    await ask(store, "b@example.com", code_hash="right")
    assert await attempt(store, "b@example.com", "right", now=T0 + TTL - 1) == ACCEPTED
    assert await attempt(store, "b@example.com", "right", now=T0 + TTL - 1) == REFUSED
    await ask(store, "c@example.com", code_hash="right")
    assert await attempt(store, "d@example.com", "right") == REFUSED  # another email's


async def test_concurrent_uses_of_one_code_let_one_in(store):
    await ask(store, "a@example.com", code_hash="right")
    results = await asyncio.gather(*(attempt(store, "a@example.com", "right")
                                     for _ in range(20)))
    assert results.count(ACCEPTED) == 1


async def test_wrong_codes_bring_growing_waits_and_the_hundredth_locks(store):
    await ask(store, "a@example.com", code_hash="right")
    now = T0 + 1
    for _ in range(5):
        assert await attempt(store, "a@example.com", "wrong", now=now) == REFUSED
    # The code is not void: after the wait the right one still works, and resets the count.
    assert await attempt(store, "a@example.com", "right", now=now) == \
        AttemptResult(Attempt.WAITING, 1000)
    assert await attempt(store, "a@example.com", "right", now=now + 1000) == ACCEPTED
    assert await rows(store, "login_failures") == []

    waits = []
    for _ in range(100):
        result = await attempt(store, "b@example.com", "wrong", now=now)
        if result.outcome is Attempt.WAITING:
            waits.append(result.wait_ms)
            now += result.wait_ms
            result = await attempt(store, "b@example.com", "wrong", now=now)
        assert result == REFUSED
    assert waits[:3] == [1000, 2000, 4000] and max(waits) == 3_600_000
    assert len(waits) == 95
    await ask(store, "b@example.com", code_hash="right", now=now)
    assert await attempt(store, "b@example.com", "right", now=now + 10 * HOUR) == \
        AttemptResult(Attempt.LOCKED)
    assert await store.unlock_login("B@example.com")
    assert await attempt(store, "b@example.com", "right", now=now + 1) == ACCEPTED
    assert not await store.unlock_login("b@example.com")


async def test_concurrent_wrong_codes_cannot_outrun_the_waits(store):
    results = await asyncio.gather(*(attempt(store, "a@example.com", f"wrong{i}")
                                     for i in range(30)))
    assert [r.outcome for r in results].count(Attempt.REFUSED) == 5
    ((failures,),) = await store.execute("SELECT failures FROM login_failures")
    assert failures == 5


async def test_attempts_are_counted_per_address(store):
    for _ in range(2):
        assert await attempt(store, "a@example.com", "x", limit=2) == REFUSED
    result = await attempt(store, "b@example.com", "x", limit=2)
    assert (result.outcome, 0 < result.wait_ms <= WINDOW) == (Attempt.LIMITED, True)


# ---- The mail queue ---------------------------------------------------------------------------


async def test_a_claim_is_one_workers_until_its_lease_lapses(store):
    for i in range(5):
        await ask(store, f"{i}@example.com")
    first, second = await asyncio.gather(claim(store, "w1", limit=3), claim(store, "w2", limit=3))
    assert len(first) + len(second) == 5
    assert not {m.code_id for m in first} & {m.code_id for m in second}
    assert await claim(store, "w3", now=T0 + MINUTE - 1) == []
    for mail in second:
        await store.login_mail_sent(mail.code_id, "w2", T0 + 1)
    # w1 crashed: its mails are claimed again once the lease lapses; w1's late answers are void.
    again = await claim(store, "w3", now=T0 + MINUTE)
    assert {m.code_id for m in again} == {m.code_id for m in first}
    assert {m.attempt for m in again} == {2}
    for mail in first:
        await store.login_mail_sent(mail.code_id, "w1", T0 + MINUTE)
    ((pending,),) = await store.execute(
        "SELECT count(*) FROM login_codes WHERE mail_at IS NOT NULL")
    assert pending == len(first)


async def test_a_mail_later_comes_back_when_due_and_a_dropped_one_does_not(store):
    await ask(store, "later@example.com")
    await ask(store, "dropped@example.com")
    mails = {m.email: m for m in await claim(store)}
    await store.login_mail_later(mails["later@example.com"].code_id, "w1", T0 + 5000)
    await store.login_mail_dropped(mails["dropped@example.com"].code_id, "w1")
    assert await claim(store, now=T0 + 4999) == []
    (again,) = await claim(store, now=T0 + 5000)
    assert (again.email, again.attempt) == ("later@example.com", 2)


async def test_used_and_expired_codes_are_not_mailed(store):
    await ask(store, "used@example.com", code_hash="right")
    await ask(store, "expired@example.com")
    assert await attempt(store, "used@example.com", "right") == ACCEPTED
    assert [m.email for m in await claim(store, now=T0 + 1)] == ["expired@example.com"]
    assert await claim(store, now=T0 + TTL) == []  # its lease lapsed, but it expired


# ---- Clean-up ---------------------------------------------------------------------------------


async def test_pruning_takes_old_codes_windows_and_unlocked_failures(store):
    await ask(store, "old@example.com", now=T0, bucket="send:old")
    await ask(store, "new@example.com", now=T0 + HOUR, bucket="send:new")
    await attempt(store, "quiet@example.com", "x", now=T0)
    await store.execute("INSERT INTO login_failures VALUES ('locked@example.com', 100, 0, $1)",
                        T0)
    await attempt(store, "recent@example.com", "x", now=T0 + HOUR)
    pruned = await store.prune_login_codes(T0, 1000, T0, 100)
    assert pruned == 3  # a code, a window, a failure count
    assert await store.execute("SELECT email FROM login_codes") == [("new@example.com",)]
    assert sorted(await store.execute("SELECT email FROM login_failures")) == \
        [("locked@example.com",), ("recent@example.com",)]
    assert sorted(await store.execute("SELECT bucket FROM login_limits")) == \
        [("send:new",), ("verify:192.0.2.1",)]  # the latter's window moved on


# ---- Users ------------------------------------------------------------------------------------


async def test_login_user_finds_and_creates_only_when_asked(store):
    made = await store.create_user(str(uuid.uuid4()), "Known@Example.com", T0)
    assert await store.login_user(str(uuid.uuid4()), "known@EXAMPLE.com", T0, create=True) == \
        (made, False)
    assert await store.login_user(str(uuid.uuid4()), "known@example.com", T0, create=False) == \
        (made, False)
    assert await store.login_user(str(uuid.uuid4()), "new@example.com", T0, create=False) is None
    new_id = str(uuid.uuid4())
    assert await store.login_user(new_id, "New@example.com", T0 + 5, create=True) == \
        (User(new_id, "new@example.com", T0 + 5), True)
    assert await store.user_by_id(new_id) == User(new_id, "new@example.com", T0 + 5)
    assert await store.user_by_id(str(uuid.uuid4())) is None


async def test_concurrent_first_logins_make_one_user(store):
    results = await asyncio.gather(*(
        store.login_user(str(uuid.uuid4()), "first@example.com", T0, create=True)
        for _ in range(10)))
    assert [is_new for _, is_new in results].count(True) == 1
    assert len({user.id for user, _ in results}) == 1
