"""The versions of mixcse_hf and of the libraries its numbers depend on: every command's ``--version`` prints them,
the run record keeps them (a resumed run warns when they changed) and the model card lists them."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

STACK = ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "peft", "tokenizers")
"""The libraries listed beside mixcse_hf, as sentence-transformers' model cards list theirs."""


def stack_versions() -> dict[str, str]:
    """Python, mixcse_hf and each installed library of :data:`STACK` -> its version."""
    from mixcse_hf import __version__

    versions = {"python": platform.python_version(), "mixcse_hf": __version__}
    for name in STACK:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def version_line() -> str:
    """E.g. ``mixcse_hf 0.2.0 (python 3.11.7, torch 2.13.0+cpu, transformers 5.24.0, ...)``."""
    versions = stack_versions()
    others = ", ".join(f"{name} {value}" for name, value in versions.items() if name != "mixcse_hf")
    return f"mixcse_hf {versions['mixcse_hf']} ({others})"


def changed_versions(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """``name old -> new`` for each package whose version differs between two :func:`stack_versions`."""
    return [
        f"{name} {recorded.get(name, 'absent')} -> {current.get(name, 'absent')}"
        for name in sorted(recorded.keys() | current.keys())
        if recorded.get(name) != current.get(name)
    ]
