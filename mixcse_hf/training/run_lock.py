"""The run directory's lock (:data:`LOCK_FILE` in ``OUTPUT_DIR``, beside the files :mod:`.run_dir` owns), held
while a run trains there. Importing this module is fast (no torch or transformers): a start checks the lock before
the seconds of imports and model loading, then takes it for the run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from filelock import FileLock, Timeout

from mixcse_hf.errors import UsageError

TRANSIENT_PREFIX = ".mixcse"
"""Our own transient files in a run directory (the lock, another process's write check, a half-written record): no
run, never removed as another run's."""
LOCK_FILE = f"{TRANSIENT_PREFIX}.lock"
LOCK_ATTEMPTS = 10


class _LockFileReplaced(Exception):
    """The lock was taken on a file that another run has since removed: take it again on the current file."""


def _still_the_lock_file(path: str) -> Callable[[int], None]:
    def check(descriptor: int) -> None:
        try:
            current = os.stat(path)
        except FileNotFoundError:
            raise _LockFileReplaced from None
        locked = os.fstat(descriptor)
        if (current.st_dev, current.st_ino) != (locked.st_dev, locked.st_ino):
            raise _LockFileReplaced

    return check


@contextlib.contextmanager
def locked(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the duration: another run holding it is a one-line :class:`UsageError`.

    An OS file lock (``filelock``), so the kernel releases it when the holding process ends, however it ends. The
    lock file is removed before the lock is released, so a run leaves no file behind; a starter that opened the
    file just before it was removed finds, once it holds the lock, that the path is no longer that file, and takes
    the lock again on the current one. An ``output_dir`` this call created is removed again when the run wrote
    nothing in it (a refused input)."""
    created = not os.path.exists(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    for _ in range(LOCK_ATTEMPTS):
        lock = FileLock(path, timeout=0, on_acquired=_still_the_lock_file(path))
        try:
            lock.acquire()
            break
        except Timeout:
            raise UsageError(
                f"output_dir {output_dir!r} is in use by another run; wait for it to finish or choose another "
                "output_dir"
            ) from None
        except _LockFileReplaced:
            continue
    else:
        raise UsageError(f"cannot take the lock {path!r}: other runs keep starting in the same output_dir")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only when empty


def check_not_in_use(output_dir: str) -> None:
    """Refuse at once (the :class:`UsageError` of :func:`locked`) when another run holds ``output_dir``'s lock;
    without a lock file nobody holds it. Writes nothing that stays: a lock file found unheld was left by a killed
    holder, and goes as :func:`locked` releases."""
    if os.path.isfile(os.path.join(output_dir, LOCK_FILE)):
        with locked(output_dir):
            pass
