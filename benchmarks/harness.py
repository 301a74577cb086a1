"""What the benchmarks share: cores, the machine-wide lock, CPU accounting, the processes they
start (`owlmetry serve`, the Node mock APNs of /work/shared/bench/apns, a throwaway PostgreSQL
cluster) and how a run is stopped.

Owns starting and stopping those processes and reading their CPU time; it measures nothing by
itself and prints nothing but progress on stderr. It must stay cheap to import (the standard
library and `tests.postgres_cluster` only): `apns_throughput.py` imports it, and that script is
also a row of the shared APNs peer harness.

The one place a benchmark touches sys.path: the repository root goes first, so the benchmarks
measure this checkout's `owlmetry` and reuse the test suite's throwaway cluster
(tests/postgres_cluster.py) as the package `tests`. The scripts run as `python benchmarks/X.py`,
which puts benchmarks/ on the path, so `import harness` finds this module.
"""

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path[:1]:
    sys.path.insert(0, REPO)

from tests.ports import free_port  # noqa: E402
from tests.postgres_cluster import Cluster, find_bin_dir, start_cluster  # noqa: E402

# Two cores: the server (or the client measured) on one, what drives it on the other.
SERVER_CORE, CLIENT_CORE = "0", "1"
# The throwaway clusters' collation: C, as README's production section asks the database to be
# created ("The database's collation"); BENCH_PG_COLLATION= (empty) keeps initdb's, the
# environment's locale, for a side-by-side run.
PG_COLLATION = os.environ.get("BENCH_PG_COLLATION", "C") or None
BENCH_LOCK = "/tmp/owl-bench.lock"  # all benchmarks of the machine take turns (flock)

# The shared APNs harness: its folder, the identity its mock and key material expect.
APNS_HARNESS = os.environ.get("APNS_BENCH_DIR", "/work/shared/bench/apns")
KEY_ID, TEAM_ID, TOPIC = "ABC123DEFG", "DEF123GHIJ", "com.example.app"
STREAMS_PER_CONNECTION = 1000  # the pool's default, and the mock's SETTINGS_MAX_CONCURRENT_STREAMS


def apns_token(i: int) -> str:
    """The harness's tokens: distinct valid 64-hex, never starting with 'dead'."""
    return "a" + format(i, "x").rjust(63, "0")


# ---- taking turns, stopping ---------------------------------------------------------------

@contextlib.contextmanager
def bench_lock():
    """Hold BENCH_LOCK so no other benchmark shares the two cores (waits its turn)."""
    with open(BENCH_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {BENCH_LOCK} (another benchmark is running)", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stop_on_signals(time_limit_s: int) -> None:
    """SIGTERM and the time limit (SIGALRM) unwind like Ctrl-C, so every `with` block cleans up:
    servers stopped, clusters removed, temp folders deleted."""
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(time_limit_s)


def run_main(main) -> None:
    """`sys.exit(main())` for a benchmark script; when Ctrl-C, SIGTERM or the time limit stopped
    it, exit 130 saying so (the `with` blocks have cleaned up by then)."""
    try:
        sys.exit(main())
    except (KeyboardInterrupt, TimeoutError) as exc:
        script = os.path.basename(sys.argv[0])
        print(f"{script}: stopped ({str(exc) or 'interrupted'}); cleaned up", file=sys.stderr)
        sys.exit(130)


def event_loop_runner(use_uvloop: bool = True):
    """`asyncio.run`, or uvloop's when asked for and installed (as `owlmetry serve` runs: uvloop
    is optional there too, plain asyncio a little slower)."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


def on_alarm(signum, frame):
    raise TimeoutError("time limit reached")


def on_term(signum, frame):
    raise KeyboardInterrupt


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- CPU accounting -----------------------------------------------------------------------

def _stat_fields(path: str) -> list[str]:
    """The fields of a /proc/.../stat after the command name (which may hold spaces)."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu_of(fields: list[str]) -> float:
    """utime + stime, in seconds."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakMemory:
    """The most resident memory a process had while this watched it (/proc/PID/status VmRSS,
    sampled every `interval_s` on a thread of this process), and its VmHWM (the kernel's own
    high-water mark since the process started) when stopped: use as a context manager."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.pid, self.interval_s = pid, interval_s
        self.peak_kb = self.hwm_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> dict[str, int]:
        with open(f"/proc/{self.pid}/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f
                    if line.startswith(("VmRSS:", "VmHWM:"))}

    def _sample(self) -> None:
        while not self._done.wait(self.interval_s):
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.peak_kb = max(self.peak_kb, self._read()["VmRSS"])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join()
        with contextlib.suppress(OSError, ValueError, IndexError, KeyError):
            status = self._read()
            self.peak_kb = max(self.peak_kb, status["VmRSS"])
            self.hwm_kb = status["VmHWM"]

    @property
    def max_mb(self) -> float:
        return max(self.peak_kb, self.hwm_kb) / 1024


def cpu_seconds(pid: int) -> float:
    """CPU of a whole process (all its threads), from /proc/<pid>/stat."""
    return _cpu_of(_stat_fields(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(the main thread's CPU s, every other thread's): the event loop vs aiosqlite's threads."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            seconds = _cpu_of(_stat_fields(f"/proc/{pid}/task/{tid}/stat"))
            if int(tid) == pid:
                main += seconds
            else:
                other += seconds
    return main, other


def tree_pids(root: int) -> list[int]:
    """A process and its children (the PostgreSQL postmaster and its backends)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(name) == root or int(_stat_fields(f"/proc/{name}/stat")[1]) == root:
                pids.append(int(name))
    return pids


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += _cpu_of(_stat_fields(f"/proc/{pid}/stat"))
    return total


def written_bytes(pids: list[int]) -> int:
    """Bytes the processes caused to be written to storage (/proc/<pid>/io write_bytes): the
    WAL, the tables and the checkpoints, whichever process does them."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
    return total


def _run_seconds(path: str) -> float:
    """The scheduler's own count of a thread's time on a CPU (ns in /proc/.../schedstat):
    exact, where /proc/.../stat counts 10 ms ticks, too coarse for one request."""
    with open(path) as f:
        return int(f.read().split()[0]) / 1e9


def exact_cpu_seconds(pid: int) -> float:
    """CPU of a whole process (all its threads: the server's event loop and aiosqlite's)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            total += _run_seconds(f"/proc/{pid}/task/{tid}/schedstat")
    return total


def exact_tree_cpu(root: int) -> dict[int, float]:
    """CPU s of a single-threaded process and of each of its children (the PostgreSQL
    postmaster and its backends), by pid; `cpu_between` takes the difference of two."""
    found = {}
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            found[pid] = _run_seconds(f"/proc/{pid}/schedstat")
    return found


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """The CPU of the processes alive at the second reading since the first: a backend that
    ended in between (its time gone from /proc) takes nothing away."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@contextlib.contextmanager
def pinned_self(core: str):
    """Run this process (the poller, the POST) on `core` while measuring, then undo it."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(core)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ---- the server ---------------------------------------------------------------------------

def owlmetry_cli(*args: str, env: dict | None = None) -> str:
    """`python -m owlmetry ARGS` (migrate, users create, keys create, ...); its stdout."""
    done = subprocess.run([sys.executable, "-m", "owlmetry", *args], env=env, check=True,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    return done.stdout.strip()


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode} before becoming healthy")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {timeout:.0f}s")


@contextlib.contextmanager
def running_server(database: str, env: dict, log_path: str, launcher=("-m", "owlmetry")):
    """`owlmetry serve` pinned to SERVER_CORE on a free port; yields (base URL, pid).
    `launcher`: what follows the interpreter instead of `-m owlmetry` (a wrapping script)."""
    port = free_port()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, sys.executable, *launcher, "serve",
             "--port", str(port), "--database", database],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        yield url, server.pid
    finally:
        stop_process(server)


def code_version() -> str:
    """HEAD, and whether the package has uncommitted changes (the figures are for the working
    tree)."""
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "owlmetry"],
                           capture_output=True, text=True).stdout.strip()
    return f"{head or 'unknown'}{' + uncommitted changes in owlmetry/' if dirty else ''}"


# ---- PostgreSQL ---------------------------------------------------------------------------

@contextlib.contextmanager
def postgres_cluster():
    """A throwaway cluster with PostgreSQL's default durable settings (fsync on) and
    PG_COLLATION, removed on exit; yields (cluster, the postmaster's pid)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (apt-get install postgresql)")
    cluster: Cluster = start_cluster(bin_dir, durable=True, collate=PG_COLLATION)
    try:
        with open(os.path.join(cluster.folder, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        yield cluster, postmaster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()  # removes the folder even when pg_ctl fails


def create_database(cluster: Cluster, name: str, template: str | None = None) -> str:
    """A new database in `cluster`, empty or a copy of `template`; its URL."""
    import asyncpg  # here: apns_throughput.py imports this module and needs no driver

    async def create() -> None:
        conn = await asyncpg.connect(cluster.url)
        try:
            copy = f" TEMPLATE {template}" if template else ""
            await conn.execute(f"CREATE DATABASE {name}{copy}")
        finally:
            await conn.close()

    asyncio.run(create())
    return cluster.database_url(name)


# ---- the mock APNs ------------------------------------------------------------------------

class MockAPNs:
    """The shared harness's Node mock APNs (`node mock_apns.js`) pinned to CLIENT_CORE, with its
    /stats and /reset; stop() it (or use it as a context manager)."""

    def __init__(self, log_path: str, harness: str = APNS_HARNESS):
        self.cert = os.path.join(harness, "mock-cert.pem")
        self.auth_key = os.path.join(harness, "apns-auth-key.p8")
        self.port, self.stats_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._stats_url = f"http://127.0.0.1:{self.stats_port}"
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["taskset", "-c", CLIENT_CORE, "node", os.path.join(harness, "mock_apns.js"),
                 "--port", str(self.port), "--stats-port", str(self.stats_port),
                 "--max-streams", str(STREAMS_PER_CONNECTION)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                self.stats()
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mock did not start (see {log_path})")
            time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self._stats_url}/stats", timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        request = urllib.request.Request(f"{self._stats_url}/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as r:
            r.read()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def mock_problems(stats: dict, n: int) -> list[str]:
    """What is wrong with the mock's counters after n pushes to n distinct tokens."""
    problems = []
    if stats["requests_received"] != n:
        problems.append(f"mock saw {stats['requests_received']} requests, expected {n}")
    if stats["unique_tokens_ok"] != n:
        problems.append(f"mock answered 200 to {stats['unique_tokens_ok']} tokens, expected {n}")
    if stats["duplicate_ok"]:
        problems.append(f"{stats['duplicate_ok']} duplicate 200s at the mock")
    other = {k: v for k, v in stats["responses_by_status"].items() if k != "200"}
    if other:
        problems.append(f"mock answered non-200s: {other}")
    return problems


async def register_new_device(session, url: str, headers: dict, latencies: list[float],
                              failures: list[str]) -> None:
    """One new device (a new token) through POST /v1/devices: its latency in seconds goes to
    `latencies`, or a line saying what went wrong to `failures`."""
    t0 = time.perf_counter()
    async with session.post(f"{url}/v1/devices", headers=headers, json={
            "channel": "mobile_push", "platform": "ios", "token": secrets.token_hex(32),
            "environment": "production"}) as resp:
        answer = await resp.read()
        if resp.status != 201:
            failures.append(f"registration: {resp.status} {answer[:200]!r}")
            return
    latencies.append(time.perf_counter() - t0)
