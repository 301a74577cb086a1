"""The store's login-code and login-user methods, on a real SQLite file and a real PostgreSQL
database: the per-hour limit, single use, the attempt limit and clean-up, also under races."""

import asyncio
import uuid

from owlmetry.store import User

HOUR = 60 * 60 * 1000
TTL = 10 * 60 * 1000
T0 = 1_700_000_000_000


async def add(store, email, code_hash="h", now=T0, limit=5):
    return await store.add_login_code(str(uuid.uuid4()), email, code_hash, now, now + TTL,
                                      now - HOUR, limit)


async def count_rows(store, email=None):
    if email is None:
        ((count,),) = await store.execute("SELECT count(*) FROM login_codes")
    else:
        ((count,),) = await store.execute("SELECT count(*) FROM login_codes WHERE email = $1", email)
    return count


async def test_the_limit_counts_the_hour_and_names_the_oldest_code(store):
    for minute in range(5):
        assert await add(store, "a@example.com", now=T0 + minute * 60_000) is None
    assert await add(store, "a@example.com", now=T0 + 30 * 60_000) == T0
    assert await add(store, "b@example.com", now=T0 + 30 * 60_000) is None  # per email
    # The oldest leaves the window an hour after it was made, and one slot frees.
    assert await add(store, "a@example.com", now=T0 + HOUR - 1) == T0
    assert await add(store, "a@example.com", now=T0 + HOUR) is None
    assert await add(store, "a@example.com", now=T0 + HOUR) == T0 + 60_000


async def test_emails_are_compared_lower_case(store):
    for _ in range(5):
        assert await add(store, "Mixed@Example.com") is None
    assert await add(store, "mixed@example.com") == T0


async def test_used_and_expired_codes_still_count(store):
    for _ in range(5):
        assert await add(store, "a@example.com", code_hash="right") is None
    assert await store.use_login_code("a@example.com", "right", T0 + 1, 5)
    # Every code is expired after ten minutes, yet the hour still counts them.
    assert await add(store, "a@example.com", now=T0 + TTL + 1) == T0


async def test_a_discarded_code_frees_its_slot(store):
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for code_id in ids:
        assert await store.add_login_code(code_id, "a@example.com", "h", T0, T0 + TTL,
                                          T0 - HOUR, 5) is None
    await store.discard_login_code(ids[0])
    assert await add(store, "a@example.com") is None
    assert await add(store, "a@example.com") == T0


async def test_rows_past_the_window_are_cleaned_up_on_a_later_send(store):
    await add(store, "old@example.com", now=T0)
    await add(store, "recent@example.com", now=T0 + 30 * 60_000)
    assert await count_rows(store) == 2
    await add(store, "other@example.com", now=T0 + HOUR)
    assert await count_rows(store, "old@example.com") == 0
    assert await count_rows(store) == 2


async def test_concurrent_sends_never_keep_more_than_the_limit(store):
    results = await asyncio.gather(*(add(store, "race@example.com") for _ in range(25)))
    assert sum(result is None for result in results) == 5
    assert await count_rows(store, "race@example.com") == 5


async def test_a_code_is_used_once_and_only_before_it_expires(store):
    await add(store, "a@example.com", code_hash="right")
    assert not await store.use_login_code("a@example.com", "right", T0 + TTL, 5)  # expired
    assert await store.use_login_code("a@example.com", "right", T0 + TTL - 1, 5)
    assert not await store.use_login_code("a@example.com", "right", T0 + TTL - 1, 5)
    assert not await store.use_login_code("b@example.com", "right", T0, 5)  # another email's


async def test_concurrent_uses_of_one_code_let_one_in(store):
    await add(store, "a@example.com", code_hash="right")
    results = await asyncio.gather(*(store.use_login_code("a@example.com", "right", T0 + 1, 5)
                                     for _ in range(20)))
    assert results.count(True) == 1


async def test_five_wrong_attempts_void_the_outstanding_codes(store):
    await add(store, "a@example.com", code_hash="right")
    for _ in range(4):
        assert not await store.use_login_code("a@example.com", "wrong", T0 + 1, 5)
    assert await store.use_login_code("a@example.com", "right", T0 + 1, 5)  # the fifth try

    await add(store, "b@example.com", code_hash="right")
    for _ in range(5):
        assert not await store.use_login_code("b@example.com", "wrong", T0 + 1, 5)
    assert not await store.use_login_code("b@example.com", "right", T0 + 1, 5)
    # A new code starts afresh.
    await add(store, "b@example.com", code_hash="new")
    assert await store.use_login_code("b@example.com", "new", T0 + 1, 5)


async def test_concurrent_wrong_attempts_cannot_outrun_the_attempt_limit(store):
    await add(store, "a@example.com", code_hash="right")
    # Many wrong guesses at once: the code counts exactly 5 of them, and is void.
    results = await asyncio.gather(*(store.use_login_code("a@example.com", f"wrong{i}", T0 + 1, 5)
                                     for i in range(30)))
    assert not any(results)
    ((attempts,),) = await store.execute("SELECT attempts FROM login_codes")
    assert attempts == 5
    assert not await store.use_login_code("a@example.com", "right", T0 + 1, 5)


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
