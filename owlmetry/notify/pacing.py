"""The fan-out's share of the event loop: how many devices the dispatcher may have in flight,
by the loop's measured lag.

Requests (a registration, a login) are answered on the event loop that runs the fan-out, and
each waits for every turn queued before its own, several times over (its body, its database's
answer, its writer turn). A fan-out of thousands of devices in flight fills those turns
(claims begun, answers read and recorded, the collector walking what they keep alive). A task
asks to sleep TICK_S and sees how much later it woke: a lag past LAG_HIGH_S halves the limit,
down to a floor; each calm tick raises it a step, up to the dispatcher's most. Claims wait
while the devices in flight reach the limit; work in flight is never stopped.

Owns the limit and its measurement only: the dispatcher asks `limit` before each claim.
"""

import asyncio
from collections.abc import Callable

TICK_S = 0.01
# A turn this long is a registration's whole budget at one of its waits.
LAG_HIGH_S = 0.02
FLOOR_SHARE = 8  # the limit never goes below the most / this
STEPS = 32  # calm ticks from the floor back to the most: a stall costs claims for ~0.3 s


class InFlightBound:
    def __init__(self, most: int, on_room: Callable[[], None], *, tick_s: float = TICK_S,
                 high_s: float = LAG_HIGH_S):
        """`most`: the dispatcher's own limit; `on_room()`: called when the limit grew."""
        self.most = most
        self.least = max(1, most // FLOOR_SHARE)
        self.limit = most
        self.shrunk = 0  # times a lagging loop made it smaller
        self._step = max(1, most // STEPS)
        self._on_room = on_room
        self._tick_s = tick_s
        self._high_s = high_s

    def lagged(self, lag_s: float) -> None:
        """One tick's measure: the loop woke the ticking task `lag_s` late."""
        if lag_s > self._high_s:
            if self.limit > self.least:
                self.limit = max(self.least, self.limit // 2)
                self.shrunk += 1
        elif self.limit < self.most:
            self.limit = min(self.most, self.limit + self._step)
            self._on_room()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self._tick_s)
            self.lagged(loop.time() - asked - self._tick_s)
