"""The one exception type for problems a user fixes by changing their input."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable


class UsageError(ValueError):
    """A bad config value, file or path.

    The message is one line that names the offending input and says how to fix it; ``run_mixcse.py`` prints
    it without a traceback (unless ``--debug``) and exits with status 2.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Training stops before anything else is saved, so the last checkpoint
    is the last good one; ``run_mixcse.py`` prints the message on one line and exits with status 3."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the command; the message says what was saved and how to go on."""


def first_line(err: BaseException) -> str:
    """An exception's message up to its first line break (its type name when it has none): the cause a one-line
    :class:`UsageError` quotes."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


VERSION_FLAG = "--version"
INTERRUPTED_STATUS = 130
"""The shell's status for a command stopped by SIGINT (128 + 2)."""


def run_cli(body: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command-line entry point on ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    ``--version`` prints the versions of mixcse_hf and its stack and returns 0. A :class:`UsageError` prints
    ``error: ...`` on one line and returns 2, a :class:`TrainingDiverged` returns 3, Ctrl-C prints
    ``interrupted: ...`` on one line and returns 130; ``--debug`` anywhere in ``argv`` lets the exception (and its
    traceback) through instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if VERSION_FLAG in argv:
        from mixcse_hf.versions import version_line

        print(version_line())
        return 0
    quiet_library_progress_bars()
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        return body(argv) or 0
    except (UsageError, TrainingDiverged) as err:
        if debug:
            raise
        print(f"error: {original_message(err)}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 3
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(f"interrupted: {err if isinstance(err, Interrupted) else 'stopped by Ctrl-C'}", file=sys.stderr)
        return INTERRUPTED_STATUS


WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
"""How torch re-raises an exception of a DataLoader worker: its type, with a message of the worker's traceback."""


def original_message(err: BaseException) -> str:
    """``err``'s message; for an exception a DataLoader worker raised, the message the worker gave it (the last
    line of the worker's traceback, after the exception's qualified name), not torch's wrapper."""
    text = str(err)
    if not WORKER_ERROR.match(text):
        return text
    name = f"\n{type(err).__module__}.{type(err).__qualname__}: "
    _, found, message = text.rstrip("\n").rpartition(name)
    return message if found else text


def quiet_library_progress_bars() -> None:
    """Outside a terminal (a log file, a pipe), the HF libraries' own progress bars ("Loading weights", datasets'
    map) are off: each would leave its redraws and a blank line in the log. The Trainer's bar is kept."""
    if sys.stderr.isatty():
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers and huggingface_hub read it at import
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
