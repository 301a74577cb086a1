"""A throwaway PostgreSQL server for the test suite and the benchmarks: initdb, pg_ctl, stop.

Runs the cluster as an unprivileged user when run as root (initdb refuses root), on a free
loopback port. For tests durability is switched off, because the data dies with the run; a
benchmark asks for PostgreSQL's default, durable settings instead.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from tests.ports import free_port


def find_bin_dir() -> str | None:
    on_path = shutil.which("initdb")
    if on_path:
        return os.path.dirname(on_path)
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    return None


def unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass
class Cluster:
    bin_dir: str
    folder: str
    port: int
    user: str | None
    durable: bool = False
    collate: str | None = None  # the databases' LC_COLLATE; None: initdb's (the environment's)

    @property
    def url(self) -> str:
        return f"postgresql://owlmetry@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://owlmetry@127.0.0.1:{self.port}/{name}"

    def run(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bin_dir, tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        # A session of its own, so a Ctrl-C meant for the caller does not kill the server
        # before the caller's clean-up stops it.
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       start_new_session=True, timeout=120)

    def start(self) -> None:
        data = os.path.join(self.folder, "data")
        fast = () if self.durable else ("--no-sync",)
        collate = ("--lc-collate", self.collate) if self.collate else ()
        self.run("initdb", "-D", data, "-U", "owlmetry", "--auth=trust", "-E", "UTF8", *fast,
                 *collate)
        self.run("pg_ctl", "-D", data, "-o", self.options, "-l", os.path.join(self.folder, "log"),
                 "-w", "start")

    @property
    def options(self) -> str:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        return options

    def pause(self) -> None:
        """Stop the server as an operator would (fast shutdown), keeping its data."""
        self.run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start a paused server again, on the same port."""
        self.run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-o", self.options,
                 "-l", os.path.join(self.folder, "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(bin_dir: str, durable: bool = False, collate: str | None = None) -> Cluster:
    user = unprivileged_user()
    folder = tempfile.mkdtemp(prefix="owlmetry-pg-")
    if user:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bin_dir, folder, free_port(), user, durable, collate)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return cluster
