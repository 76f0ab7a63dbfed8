"""Checks that an output path can be written, made before any work starts (one-line :class:`UsageError` s)."""

from __future__ import annotations

import os
import tempfile

from mixcse_hf.errors import UsageError


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _can_create_in(directory: str) -> bool:
    """Whether a directory can really be created in ``directory`` (``os.access`` says yes to root even on a
    read-only filesystem)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mixcse-write-check-", dir=directory))
    except OSError:
        return False
    return True


def check_output_dir(path: str, what: str = "output_dir") -> None:
    """``path`` is a directory, or can be created as one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a file; choose a directory path")
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise UsageError(f"{what} {path!r} cannot be created: {existing!r} is a file")
    if not _can_create_in(existing):
        raise UsageError(f"{what} {path!r} is not writable ({existing!r} refuses new files); choose a writable path")


def check_output_file(path: str, what: str) -> None:
    """``path`` can be written as a file: not a directory, and its parent directory exists and is writable."""
    if os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a directory; give a file path")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{what} {path!r}: its directory {parent!r} does not exist; create it first")
    if not _can_create_in(parent):
        raise UsageError(f"{what} {path!r}: its directory {parent!r} is not writable; choose a writable path")
