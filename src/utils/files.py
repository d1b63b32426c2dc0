"""File-system helpers shared by the writers: an inter-process lock and the process umask."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

# (lock path, thread) -> depth: a lock already held by this thread is entered again at once.
_held: dict[tuple[str, int], int] = {}
# errno values of a file system that has no file locks (some network file systems)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _flock(f, blocking: bool) -> bool | None:
    """Lock `f` exclusively: True when held, False when another holds it (non-blocking), None
    when the file system has no locks."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if e.errno in NO_LOCKS:
            return None
        raise
    return True


@contextmanager
def try_lock(path: str | Path) -> Iterator[bool | None]:
    """Try once for an exclusive lock on the file `path`: True while held, False when another
    process holds it (or its folder is gone), None when the file system has no locks."""
    try:
        f = open(path, "a")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        yield False
        return
    with f:
        got = _flock(f, blocking=False)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def exclusive_lock(path: str | Path, what: str = "") -> Iterator[None]:
    """Hold an exclusive `flock` on the file `path` while the block runs. Another process (or
    thread) waits; the same thread may nest it. `what` names the guarded work in the message
    a waiting process logs.

    The holder removes the file when it is done, so no lock file is left behind; a process
    that was waiting on the removed file notices (its file is no longer the one at `path`)
    and locks again, so two processes never hold two different files.
    """
    path = Path(path)
    key = (str(path.absolute()), threading.get_ident())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        f = open(path, "a")  # noqa: SIM115 (closed below, after the lock is released)
        got = _flock(f, blocking=False)
        if got is None:  # nothing to exclude others with: say so, and go on
            f.close()
            path.unlink(missing_ok=True)
            log.warning(
                f"{path}: this file system has no file locks; {what or 'the work'} is "
                f"not protected against a concurrent run"
            )
            yield
            return
        if got is False:
            if not waited:
                log.info(f"Waiting for another process to finish {what or path}")
                waited = True
            fcntl.flock(f, fcntl.LOCK_EX)
        held = os.fstat(f.fileno())
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        f.close()  # the holder before us removed this file: lock the new one
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        path.unlink(missing_ok=True)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def process_umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(folder: str | Path) -> None:
    """Give a folder made by `tempfile.mkdtemp` (always 0700) the mode a plain `mkdir` would."""
    os.chmod(folder, 0o777 & ~process_umask())
