"""``python -m mixcse_hf.evaluation ...``: the 7-task STS table (see :mod:`mixcse_hf.evaluation.cli`)."""

from __future__ import annotations

import sys

from mixcse_hf.evaluation.cli import main

sys.exit(main())
