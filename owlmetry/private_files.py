"""Files that must stay the server user's own: the SQLite database (with its -wal, -shm and
-journal), its backups, and the key file the JWT signing secret lives in.

Owns making such a file private (0600, whatever the umask), and refusing one that other users
can reach (with the chmod that fixes it) or that is no file at all (a directory, a device). As
PostgreSQL does with its data directory, the database may be group-readable (0640: an
operator's choice, for a backup group) but never group-writable or open to others; a key file
must be 0600 (or 0400). Must not know what the files hold.
"""

import contextlib
import os
import shlex
import stat

PRIVATE_MODE = 0o600
# Permission bits that refuse a file: the database's (PostgreSQL's group mode allows group
# read) and a key file's (nobody else, as ssh and PostgreSQL's ssl_key_file ask).
DATABASE_REFUSED_BITS = 0o027
KEY_REFUSED_BITS = 0o077


class UnfitFile(Exception):
    """A private file that cannot be one: other users can reach it (the message says which and
    the chmod that fixes it), or it is not a regular file."""


def create_private(path: str) -> bool:
    """Create `path` empty with mode 0600 unless it exists; True when this call made it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return False
    os.fchmod(fd, PRIVATE_MODE)  # the umask only ever removes bits; this says it outright
    os.close(fd)
    return True


def write_private_once(path: str, data: bytes) -> bool:
    """Make `path` hold `data`, mode 0600, unless it exists (then it is left alone): True when
    this call made it. Readers never see half of it: it is written aside and linked in place,
    which fails when a concurrent caller got there first."""
    if os.path.lexists(path):  # also where the folder is read-only (a key file in /etc)
        return False
    partial = f"{path}.{os.getpid()}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(partial, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.remove(partial)


def refuse_unfit(paths: list[str], what: str, refused_bits: int) -> None:
    """UnfitFile naming the first of `paths` that exists and is not a regular file, or else
    every one that exists with any of `refused_bits` set."""
    exposed = []
    for path in paths:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(status.st_mode):
            # Never the chmod: `chmod 600 /tmp` or `/dev/null` would break the host.
            raise UnfitFile(f"{what}: {path} is {kind_of(status.st_mode)}, not a file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & refused_bits:
            exposed.append((path, mode))
    if not exposed:
        return
    modes = ", ".join(f"{path} is {mode:04o}" for path, mode in exposed)
    fix = " ".join(shlex.quote(path) for path, _ in exposed)
    raise UnfitFile(f"{what} can be read or changed by other users ({modes}); "
                    f"make it private with: chmod 600 {fix}")


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
