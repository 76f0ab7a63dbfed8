"""Checks that an output path can be written, made before any work starts (one-line :class:`UsageError` s), and
the small JSON files runs keep beside their outputs, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

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


def umask_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0)  # the only way to read it
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomically(path: str, value: Any, **dump_options: Any) -> None:
    """Write ``value`` as JSON to a temporary file beside ``path``, then rename it over ``path``: a crash leaves the
    old file or the new one, never half of one. ``dump_options`` go to :func:`json.dump`. The file gets the mode
    of any other new file (a temporary file is created with mode 600)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        try:
            json.dump(value, handle, **dump_options)
            os.fchmod(handle.fileno(), umask_file_mode())
        except BaseException:
            os.remove(handle.name)
            raise
    os.replace(handle.name, path)


def read_json(path: str) -> Any | None:
    """The JSON value in ``path``, or None when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
