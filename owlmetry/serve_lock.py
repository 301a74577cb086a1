"""One `owlmetry serve` per SQLite database: an exclusive lock on `<database>.serve.lock`,
taken before the server starts and held for the life of the process.

SQLite's writer is one connection of one process (its turns and batches are that process's
alone); a second server on the same file works against it, and each would answer 503 whenever
the other held the file. The lock is the kernel's (`flock`): a process that dies, even by
SIGKILL, lets go of it, so a restart after a crash never finds it taken. The other commands
(`users`, `keys`, `backup`, `cleanup`, ...) take no lock and run beside a server. Must not
know what the database holds; PostgreSQL takes any number of servers.
"""

import fcntl
import os

from owlmetry.private_files import create_private

SUFFIX = ".serve.lock"


class AlreadyServing(Exception):
    """Another live process holds the lock; the message names it."""


def hold_serve_lock(database_path: str) -> int:
    """Take the lock of the SQLite database at `database_path` and return its file descriptor,
    which the caller keeps open for as long as it serves. AlreadyServing when another process
    holds it; OSError when the lock file cannot be made."""
    path = database_path + SUFFIX
    create_private(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyServing(
            f"another owlmetry serve (pid {holder}) is using the SQLite database "
            f"{database_path}; SQLite is for one server process: stop that one first, or use "
            "PostgreSQL for several") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
