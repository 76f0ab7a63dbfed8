"""The one exception type for problems a user fixes by changing their input."""

from __future__ import annotations


class UsageError(ValueError):
    """A bad config value, file or path.

    The message is one line that names the offending input and says how to fix it; ``run_mixcse.py`` prints
    it without a traceback (unless ``--debug``) and exits with status 2.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Training stops before anything else is saved, so the last checkpoint
    is the last good one; ``run_mixcse.py`` prints the message on one line and exits with status 3."""
