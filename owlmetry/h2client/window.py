"""How many streams one connection keeps in flight below the peer's limit: a window that follows
the answers' round trips (TCP Vegas's rule, per stream instead of per byte).

A peer that answers as fast as it reads needs few streams; one far away needs many. With more
streams in flight than the peer answers within a round trip, the rest wait in its (or the
sockets') buffers, and every request sent then -- a retry after a 5xx included, which the pool
puts ahead of its own queue -- waits behind all of them: a thousand streams on a peer answering
1,500 a second is ~0.7 s a try (benchmarks/RESULTS.md, "hostile APNs"). Requests beyond the
window wait in the pool's queue instead, where a retry goes first.

Each answer is one sample: its round trip above the least seen lately (`base`) is time spent
queued; over `target_s` the window shrinks by one stream, else it grows by one, between `least`
and the peer's limit. Growing by one per answer doubles it each round trip, so a peer far away
gets its thousand streams within a few. The least round trip is kept per epoch (the least of
this one and the last), so a path that got slower is not read as a queue for long.

Owns the window's arithmetic only: the connection stamps streams and reports their answers.
"""

# A retry's wait behind the streams already sent, at most (about): a tenth of a second keeps a
# CPU-bound peer's reads full (our own event loop's turns are 10-50 ms under a fan-out).
TARGET_S = 0.1
LEAST = 50  # streams: below this a peer's read batches, not its queue, set the pace
EPOCH_S = 10.0


class StreamWindow:
    __slots__ = ("_base", "_base_before", "_epoch_end", "_least", "_target_s", "size")

    def __init__(self, least: int = LEAST, target_s: float = TARGET_S):
        self._least = least
        self._target_s = target_s
        self.size = least
        self._base = self._base_before = float("inf")
        self._epoch_end = 0.0

    def answered(self, round_trip_s: float, now: float, most: int) -> None:
        """One answer came `round_trip_s` after its stream opened; `most`: the peer's limit."""
        if now >= self._epoch_end:
            self._base_before, self._base = self._base, round_trip_s
            self._epoch_end = now + EPOCH_S
        elif round_trip_s < self._base:
            self._base = round_trip_s
        base = self._base if self._base < self._base_before else self._base_before
        if round_trip_s - base > self._target_s:
            if self.size > self._least:
                self.size -= 1
        elif self.size < most:
            self.size += 1
