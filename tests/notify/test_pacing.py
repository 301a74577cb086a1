"""The fan-out's in-flight limit by the event loop's measured lag (`notify.pacing`): it shrinks
while the loop lags, never below its floor, and comes back to the dispatcher's most when the
loop is calm; a running dispatcher claims under it, against the project's mock APNs."""

import asyncio
import time

from owlmetry.notify.pacing import InFlightBound
from tests.notify.conftest import CONTENT, user_with_devices, wait_done


def test_a_lagging_loop_halves_the_limit_down_to_its_floor_and_a_calm_one_restores_it():
    grown = []
    bound = InFlightBound(8000, lambda: grown.append(bound.limit))

    bound.lagged(0.05)
    assert bound.limit == 4000
    for _ in range(10):
        bound.lagged(0.05)
    assert bound.limit == 1000  # the floor: claims slow down, they never stop
    assert bound.shrunk == 3
    assert grown == []

    bound.lagged(0.001)
    assert bound.limit == 1250
    while bound.limit < 8000:
        bound.lagged(0.001)
    assert grown[-1] == 8000
    bound.lagged(0.001)
    assert bound.limit == 8000


async def test_the_running_bound_shrinks_while_the_loop_is_held_and_comes_back():
    bound = InFlightBound(800, lambda: None)
    pacer = asyncio.create_task(bound.run())
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # a turn of 100 ms, as a big claim begun or a collection
        for _ in range(100):
            await asyncio.sleep(0)
            if bound.shrunk:
                break
        assert bound.shrunk >= 1 and bound.limit < 800
        for _ in range(3000):
            if bound.limit == 800:
                break
            await asyncio.sleep(0.01)
        assert bound.limit == 800
    finally:
        pacer.cancel()


async def test_a_dispatcher_whose_loop_lags_shrinks_its_limit_and_still_reaches_everyone(
        store, mocks, mobile_push, dispatchers):
    users = [await user_with_devices(store, ["production"], n) for n in range(40)]
    mocks.production.behaviour.latency_s = 0.05
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_in_flight=16, claim_size=4)
    ids = await dispatcher.enqueue([u for u, _ in users], CONTENT)
    for _ in range(3000):
        if dispatcher.in_flight:
            break
        await asyncio.sleep(0.001)
    time.sleep(0.1)
    await asyncio.sleep(0)
    for _ in range(100):
        if dispatcher.bound.shrunk:
            break
        await asyncio.sleep(0)

    assert dispatcher.bound.shrunk >= 1
    progress = await wait_done(store, ids)
    assert progress.pushes == {"delivered": 40}
