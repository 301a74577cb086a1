"""Where a server's time goes, for the benchmarks' extra (never timed) runs: py-spy recording and
its summary by layer, the statement timer (every database call of a server, by statement), the
stall probe (every event-loop turn longer than a threshold, by the code it ran), and callgrind's
switch and count (instructions, for the scripts that run a process under valgrind).

Owns those instruments. It must not be imported by the server itself: the statement timer
monkeypatches aiosqlite and asyncpg, and does so only in a server started through this file:

    python benchmarks/profiling.py --serve-timed OUT.json serve --port P --database URL

(`harness.running_server(..., launcher=statement_timer_launcher(OUT.json))`), which runs
`owlmetry serve` with every call timed and writes the table as JSON into OUT.json at exit, and

    python benchmarks/profiling.py --serve-stalls OUT.json serve --port P --database URL

which runs it on asyncio's own loop (uvloop's turns cannot be wrapped) and writes every turn of
20 ms or more (PROBE_STALL_MS) as JSON into OUT.json at exit.
"""

import collections
import contextlib
import functools
import gc
import importlib
import json
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import harness

# ---- callgrind --------------------------------------------------------------------------------


def callgrind(switch: str, pid: int) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def instructions(path: str) -> int:
    """The file's `totals:` (its `summary:` stays 0 with the instrumentation switched)."""
    with open(path) as f:
        for line in f:
            if match := re.match(r"totals: (\d+)", line):
                return int(match.group(1))
    raise RuntimeError(f"no totals in {path}")


# ---- py-spy -------------------------------------------------------------------------------


def py_spy_command() -> str:
    """py-spy's path: on PATH, or beside this Python (a venv not activated). Exits with a
    clear message where it is not installed, before any run: its absence shows otherwise only
    as a missing profile at the end."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    found = shutil.which("py-spy") or (beside if os.access(beside, os.X_OK) else None)
    if found is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    return found


@contextlib.contextmanager
def py_spy_recording(pid: int, out: str, *flags: str, core: str | None = None):
    """py-spy sampling `pid` while the block runs (collapsed stacks into `out`, flamegraph.pl
    input); stopped with SIGINT at the end, on which py-spy writes its output."""
    pinned = ["taskset", "-c", core] if core else []
    spy = subprocess.Popen(
        [*pinned, py_spy_command(), "record", "--pid", str(pid), *flags, "--format", "raw", "-o", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        harness.stop_process(spy, signal.SIGINT, timeout=30)


def frame_name(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (package/module.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


LAYERS = (  # the innermost frame of ours in a sample says whose work it is
    ("owlmetry/apns/", "APNs pool (owlmetry/apns and h2 under it)"),
    ("owlmetry/notify/providers/", "APNs provider (payload, answer mapping)"),
    ("owlmetry/notify/channels/", "mobile_push channel (routing by platform)"),
    ("owlmetry/notify/", "dispatcher and outcome writer (with the asyncio calls they make)"),
    ("owlmetry/store/", "store (statements, rows, driver calls under it)"),
    ("owlmetry/http/", "HTTP route (the POST)"),
)
LIBRARIES = (("/aiohttp/", "aiohttp (outside our routes)"), ("/asyncpg/", "asyncpg"),
             ("/aiosqlite/", "aiosqlite"), ("/asyncio/", "asyncio (outside our frames)"))
ROOT_FRAMES = ("_run_module_as_main", "_run_code", "<module>", "main", "serve_command", "run_app")


def layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, name in LAYERS:
            if marker in frame:
                return name
    leaf = frames[-1] if frames else ""
    for marker, name in LIBRARIES:
        if marker in leaf:
            return name
    if not frames or leaf.startswith("run_app "):
        return "event loop in C (uvloop: sockets, TLS, callbacks), no Python frame on top"
    return "other (" + frame_name(leaf) + ")"


def summarize_profile(path: str, top: int = 25) -> str:
    """Shares of all samples by layer, by function (self) and by function (inclusive), from
    py-spy's collapsed stacks (recorded with --threads: the event loop's thread is MainThread).
    With --gil, a sample is CPU work done under the GIL, in whichever thread."""
    own, inclusive, threads = collections.Counter(), collections.Counter(), collections.Counter()
    layers = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            if frames[0].startswith("thread ("):
                name = frames.pop(0).partition(": ")[2]
                threads["MainThread" if name == "MainThread" else "other threads"] += n
            layers[layer(frames)] += n
            names = [frame_name(fr) for fr in frames]
            if names:
                own[names[-1]] += n
            for name in set(names):
                if name.split(" (")[0] not in ROOT_FRAMES:
                    inclusive[name] += n
    lines = [f"{total} samples; " + ", ".join(
        f"{name} {100 * n / total:.1f}%" for name, n in threads.most_common()), "", "by layer:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in layers.most_common()]
    lines += ["", "self (top):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive (top; coroutine stacks start at the coroutine the loop resumed):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


# ---- the statement timer ------------------------------------------------------------------

TIMED_ASYNCPG_METHODS = ("fetch", "fetchrow", "fetchval", "execute", "executemany")
SQL_VERB = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")


def statement_timer_launcher(out: str) -> tuple[str, ...]:
    """What `harness.running_server` runs instead of `-m owlmetry` for a timed server."""
    return (os.path.abspath(__file__), "--serve-timed", out)


def normalized(sql: str) -> str:
    return re.sub(r"[$?]\d+", "?", " ".join(sql.split()))


def statement_labels() -> list[tuple[str, str]]:
    """(signature, name) of every statement the store defines (an upper-case string constant of
    any module of owlmetry.store, whatever the modules are called), longest signature first."""
    import owlmetry.store

    modules = [owlmetry.store] + [
        importlib.import_module(f"owlmetry.store.{info.name}")
        for info in pkgutil.iter_modules(owlmetry.store.__path__)]
    labels = {}
    for module in modules:
        for name, value in vars(module).items():
            if not name.isupper():
                continue
            # A statement per engine is a dict of them: labelled NAME[engine].
            texts = ({f"{name}[{key}]": text for key, text in value.items()}
                     if isinstance(value, dict) else {name: value})
            for label, text in texts.items():
                if isinstance(text, str) and len(text) > 20:
                    # A fragment that is no statement (a column list, a condition) would
                    # name every statement it is part of.
                    if SQL_VERB.search(text):
                        body = text.split("({batch})")[-1].split("{")[0]
                        labels[normalized(body)[:60]] = label
    return sorted(labels.items(), key=lambda item: -len(item[0]))


def serve_timed(out: str, argv: list[str]) -> int:
    """`owlmetry <argv>` (serve) with every database call timed by statement; JSON into `out`
    at exit. SQLite: CPU of aiosqlite's thread per statement (thread_time) and the wait seen
    from the event loop; PostgreSQL: the wait seen from the event loop (asyncpg's query calls)."""
    import aiosqlite.core
    import asyncpg.connection

    labels = statement_labels()
    stats: dict[str, list] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    guard = threading.Lock()

    @functools.cache
    def label(sql: str) -> str:
        text = normalized(sql)
        return next((name for sig, name in labels if sig in text), text[:50])

    def record(name, calls, thread_cpu, thread_wall, loop_wall):
        with guard:
            row = stats[name]
            row[0] += calls
            row[1] += thread_cpu
            row[2] += thread_wall
            row[3] += loop_wall

    original_sqlite = aiosqlite.core.Connection._execute

    async def timed_sqlite(self, fn, *args, **kwargs):
        name = label(args[0]) if args and isinstance(args[0], str) else fn.__name__.upper()

        def timed(*a, **k):
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                record(name, 0, time.thread_time() - c0, time.perf_counter() - w0, 0.0)

        t0 = time.perf_counter()
        try:
            return await original_sqlite(self, timed, *args, **kwargs)
        finally:
            record(name, 1, 0.0, 0.0, time.perf_counter() - t0)

    aiosqlite.core.Connection._execute = timed_sqlite

    def timed_asyncpg(original):
        async def timed(self, query, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await original(self, query, *args, **kwargs)
            finally:
                record(label(query), 1, 0.0, 0.0, time.perf_counter() - t0)
        return timed

    # Each of these runs its query itself (none calls another), so no call is counted twice.
    for method in TIMED_ASYNCPG_METHODS:
        setattr(asyncpg.connection.Connection, method,
                timed_asyncpg(getattr(asyncpg.connection.Connection, method)))
    return serve_then_dump(argv, out, lambda: {
        name: dict(zip(("calls", "thread_cpu_s", "thread_wall_s", "loop_wall_s"), row))
        for name, row in stats.items()})


def serve_then_dump(argv: list[str], out: str, gathered) -> int:
    """Run `owlmetry serve` in this process as patched; at its end, whatever the way, write
    what a probe `gathered()` to `out` as JSON."""
    from owlmetry import cli
    try:
        return cli.main(argv)
    finally:
        with open(out, "w") as f:
            json.dump(gathered(), f)


# ---- the stall probe ----------------------------------------------------------------------

PROBE_STALL_MS = 20.0


def stall_probe_launcher(out: str) -> tuple[str, ...]:
    """What `harness.running_server` runs instead of `-m owlmetry` for a probed server."""
    return (os.path.abspath(__file__), "--serve-stalls", out)


def where_suspended(task) -> str:
    """The task's coroutine and the awaits it is suspended in, outermost first: after a turn,
    the place the turn ended."""
    places, coro = [], task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        frame = coro.cr_frame
        if frame is not None:
            places.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = coro.cr_await
    return " > ".join(places) or repr(task)


def serve_with_stall_probe(out: str, argv: list[str]) -> int:
    """`owlmetry <argv>` (serve) with each event-loop turn timed; the turns of PROBE_STALL_MS or
    more are written to `out` at exit, each with the task it ran and where that task stopped,
    and the garbage collections of a quarter of that or more (inside some turn)."""
    import asyncio

    from owlmetry import cli

    stalls = []
    original_run = asyncio.events.Handle._run

    def timed_run(handle):
        t0 = time.perf_counter()
        try:
            return original_run(handle)
        finally:
            took_ms = 1000 * (time.perf_counter() - t0)
            if took_ms >= PROBE_STALL_MS:
                owner = getattr(handle._callback, "__self__", None)
                what = (where_suspended(owner) if isinstance(owner, asyncio.tasks._PyTask)
                        else repr(handle._callback)[:120])
                stalls.append({"at": time.time(), "ms": round(took_ms, 1), "what": what})

    def probed_loop():
        loop = asyncio.new_event_loop()
        # The pure-Python Task: its turns are bound methods, so a turn names its task.
        loop.set_task_factory(lambda lp, coro, **kw: asyncio.tasks._PyTask(coro, loop=lp, **kw))
        return loop

    collecting = {}

    def timed_collection(phase, info):
        if phase == "start":
            collecting["t0"] = time.perf_counter()
        elif "t0" in collecting:
            took_ms = 1000 * (time.perf_counter() - collecting.pop("t0"))
            if took_ms >= PROBE_STALL_MS / 4:  # a part of a turn, worth naming
                stalls.append({"at": time.time(), "ms": round(took_ms, 1),
                               "what": f"garbage collection, generation {info['generation']}"})

    gc.callbacks.append(timed_collection)
    asyncio.events.Handle._run = timed_run
    cli.new_event_loop = probed_loop
    return serve_then_dump(argv, out, lambda: stalls)


# ---- the wait probe -----------------------------------------------------------------------

LAG_TICK_S = 0.005


def wait_probe_launcher(out: str) -> tuple[str, ...]:
    """What `harness.running_server` runs instead of `-m owlmetry` for a server whose
    registrations' waits are timed."""
    return (os.path.abspath(__file__), "--serve-waits", out)


def serve_with_wait_probe(out: str, argv: list[str]) -> int:
    """`owlmetry <argv>` (serve), on its own loop (uvloop), with where a registration's time goes
    written to `out` at exit: each store call (`register_device`, ms), each of its batches, the
    waits of its batches for the database (SQLite: a writer turn; PostgreSQL: a pool
    connection), every other writer turn's and pool connection's wait, and the event loop's lag
    (a task asking to sleep LAG_TICK_S: how much later it woke)."""
    import asyncio
    import contextvars

    import asyncpg.pool

    from owlmetry import cli
    from owlmetry.store import devices, sqlite

    records: dict[str, list] = collections.defaultdict(list)
    registering = contextvars.ContextVar("registering", default=False)

    def timed(kind, original, mark=False):
        async def call(*args, **kwargs):
            token = registering.set(True) if mark else None
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                records[kind].append((time.time(), 1000 * (time.perf_counter() - t0)))
                if token is not None:
                    registering.reset(token)
        return call

    devices.Devices.register_device = timed("register_device", devices.Devices.register_device,
                                            mark=True)
    devices.Devices._register_batch = timed("register_batch", devices.Devices._register_batch)

    original_turn = sqlite.WriterTurns.turn

    @contextlib.asynccontextmanager
    async def turn(self, bulk=False):
        t0 = time.perf_counter()
        async with original_turn(self, bulk):
            kind = ("writer_wait_registration" if registering.get()
                    else "writer_wait_bulk" if bulk else "writer_wait_other")
            records[kind].append((time.time(), 1000 * (time.perf_counter() - t0)))
            t1 = time.perf_counter()
            try:
                yield
            finally:
                records[kind.replace("wait", "hold")].append(
                    (time.time(), 1000 * (time.perf_counter() - t1)))

    sqlite.WriterTurns.turn = turn
    original_acquire = asyncpg.pool.Pool._acquire

    async def acquire(self, timeout):
        t0 = time.perf_counter()
        try:
            return await original_acquire(self, timeout)
        finally:
            kind = ("pool_wait_registration" if registering.get()
                    else "pool_wait_enqueue" if ENQUEUING.get() else "pool_wait_other")
            records[kind].append((time.time(), 1000 * (time.perf_counter() - t0)))

    asyncpg.pool.Pool._acquire = acquire
    enqueue_parts(records)

    async def lag():
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_TICK_S)
            records["loop_lag"].append(
                (time.time(), 1000 * (time.perf_counter() - t0 - LAG_TICK_S)))

    made = cli.new_event_loop

    def probed_loop():
        loop = made()
        loop.call_soon(lambda: loop.create_task(lag()))
        return loop

    cli.new_event_loop = probed_loop
    return serve_then_dump(argv, out, lambda: records)


class _Slice:
    """Where one POST's enqueue is: when its last part ended (the gap to the next part's start
    is the event-loop turns in between)."""

    __slots__ = ("last",)

    def __init__(self):
        self.last = time.perf_counter()


ENQUEUING = None  # the wait probe's contextvar: the _Slice of the enqueue under way, if any


def enqueue_parts(records: dict) -> None:
    """The wait probe's view of a producer's enqueue (ms, one row each): the whole of it
    (`enqueue`), per slice its preferences read (`enqueue_preferences`), its routing
    (`enqueue_routing`), its write (`enqueue_write`) and, inside those, each statement's round
    trip on its connection (`enqueue_statement_rtt`, pool waits apart), and the event-loop turns
    between one part's end and the next's start (`enqueue_between`); and before it, the POST's
    check of which recipients exist (`post_known_recipients`)."""
    import contextvars

    import asyncpg.connection

    from owlmetry.http import producer
    from owlmetry.notify import dispatcher
    from owlmetry.store import deliveries, users

    global ENQUEUING
    ENQUEUING = contextvars.ContextVar("enqueuing", default=None)

    def part(kind, original, is_async=True):
        def mark(state, t0):
            t1 = time.perf_counter()
            records["enqueue_between"].append((time.time(), 1000 * (t0 - state.last)))
            records[kind].append((time.time(), 1000 * (t1 - t0)))
            state.last = t1

        if not is_async:
            def sync_call(*args, **kwargs):
                state, t0 = ENQUEUING.get(), time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    if state is not None:
                        mark(state, t0)
            return sync_call

        async def call(*args, **kwargs):
            state, t0 = ENQUEUING.get(), time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                if state is not None:
                    mark(state, t0)
        return call

    original_enqueue = dispatcher.Dispatcher.enqueue

    async def enqueue(*args, **kwargs):
        token = ENQUEUING.set(_Slice())
        t0 = time.perf_counter()
        try:
            return await original_enqueue(*args, **kwargs)
        finally:
            records["enqueue"].append((time.time(), 1000 * (time.perf_counter() - t0)))
            ENQUEUING.reset(token)

    dispatcher.Dispatcher.enqueue = enqueue
    original_known = producer.known_recipients

    async def known_recipients(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return await original_known(*args, **kwargs)
        finally:
            records["post_known_recipients"].append(
                (time.time(), 1000 * (time.perf_counter() - t0)))

    producer.known_recipients = known_recipients
    users.UsersAndKeys.preferences_of = part("enqueue_preferences",
                                             users.UsersAndKeys.preferences_of)
    dispatcher.group_recipients = part("enqueue_routing", dispatcher.group_recipients, False)
    deliveries.Deliveries.enqueue_groups = part("enqueue_write",
                                                deliveries.Deliveries.enqueue_groups)
    original_fetch = asyncpg.connection.Connection.fetch

    async def fetch(self, query, *args, **kwargs):
        if ENQUEUING.get() is None:
            return await original_fetch(self, query, *args, **kwargs)
        t0 = time.perf_counter()
        try:
            return await original_fetch(self, query, *args, **kwargs)
        finally:
            records["enqueue_statement_rtt"].append(
                (time.time(), 1000 * (time.perf_counter() - t0)))

    asyncpg.connection.Connection.fetch = fetch


def waits_table(records: dict, since: float = 0.0) -> str:
    """The wait probe's figures (ms) per kind, after `since` (time.time())."""
    lines = ["| what | count | p50 ms | p99 ms | max ms | over 50 ms | sum s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, rows in sorted(records.items()):
        values = sorted(ms for at, ms in rows if at >= since)
        if values:
            p50, p99 = (values[min(len(values) - 1, int(q * len(values)))] for q in (0.5, 0.99))
            lines.append(f"| {kind} | {len(values)} | {p50:.1f} | {p99:.1f} | {values[-1]:.1f} "
                         f"| {sum(ms > 50 for ms in values)} | {sum(values) / 1000:.2f} |")
    return "\n".join(lines)


def stalls_table(stalls: list[dict], top: int = 15) -> str:
    """The stall probe's turns grouped by where they ended, the costliest group first."""
    groups: dict[str, list[float]] = collections.defaultdict(list)
    for stall in stalls:
        groups[stall["what"]].append(stall["ms"])
    lines = ["| turns | total ms | max ms | ended at |", "|---:|---:|---:|---|"]
    for what, times in sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"| {len(times)} | {sum(times):.0f} | {max(times):.0f} | {what} |")
    return "\n".join(lines)


def statements_table(statements: dict) -> str:
    """The markdown table of serve_timed's JSON, the costliest statement first."""
    rows = sorted(statements.items(), key=lambda kv: -max(kv[1]["thread_cpu_s"],
                                                          kv[1]["loop_wall_s"]))
    lines = ["| statement | calls | DB thread CPU s | loop-side wait s | ms per call (wait) |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows:
        if row["calls"]:
            lines.append(f"| {name} | {row['calls']} | {row['thread_cpu_s']:.3f} | "
                         f"{row['loop_wall_s']:.3f} | "
                         f"{1000 * row['loop_wall_s'] / row['calls']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    modes = {"--serve-timed": serve_timed, "--serve-stalls": serve_with_stall_probe,
             "--serve-waits": serve_with_wait_probe}
    if sys.argv[1:2] not in ([mode] for mode in modes) or len(sys.argv) < 4:
        sys.exit(f"usage: {sys.argv[0]} --serve-timed|--serve-stalls|--serve-waits OUT.json serve "
                 "[owlmetry serve flags]")
    sys.exit(modes[sys.argv[1]](sys.argv[2], sys.argv[3:]))
