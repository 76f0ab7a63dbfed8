"""Layers point down: no module of the package imports from a package of a higher rank.

Ranks: the base modules (``errors``, ``output_files``, ``text_files``) 0; ``models``, ``losses``, ``evaluation`` 1;
``hub`` 2; ``training`` 3; ``cli`` 4 (``run_mixcse.py`` sits on top, outside the package). Every ``import`` and
``from ... import`` counts, also inside functions and under ``TYPE_CHECKING``. The package root
(``mixcse_hf/__init__.py``, the lazy public API) is exempt; importing from it elsewhere counts as importing the
module behind each name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mixcse_hf
from tests.conftest import REPO_ROOT

PACKAGE = "mixcse_hf"
PACKAGE_DIR = REPO_ROOT / PACKAGE
RANKS = {
    "errors": 0,
    "output_files": 0,
    "text_files": 0,
    "versions": 0,
    "models": 1,
    "losses": 1,
    "evaluation": 1,
    "hub": 2,
    "training": 3,
    "cli": 4,
}
"""The rank of each top-level module or subpackage of ``mixcse_hf``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py")) if path != PACKAGE_DIR / "__init__.py"}


def rank(module: str) -> int | None:
    """The rank of a ``mixcse_hf...`` module; ``None`` for the package root and for a part without a rank (which
    :func:`test_every_part_of_the_package_has_a_rank` reports)."""
    parts = module.split(".")
    return RANKS.get(parts[1]) if len(parts) > 1 else None


def imported_modules(module: str, path: Path) -> list[tuple[int, str, str]]:
    """(line, imported ``mixcse_hf`` module, the import as written) of every import in ``path``."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, f"import {alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                source = ".".join([*base, *([node.module] if node.module else [])])
            written = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            for alias in node.names:
                found.append((node.lineno, resolve_from(source, alias.name), written))
    return sorted((line, name, written) for line, name, written in found if name.split(".")[0] == PACKAGE)


def resolve_from(source: str, name: str) -> str:
    """The module that ``from source import name`` reads: a submodule of that name, the module behind a name of
    the root's lazy public API, or ``source`` itself."""
    if f"{source}.{name}" in MODULES:
        return f"{source}.{name}"
    if source == PACKAGE and name in mixcse_hf._PUBLIC_API:
        return mixcse_hf._PUBLIC_API[name]
    return source


def test_every_part_of_the_package_has_a_rank() -> None:
    tops = {name.split(".")[1] for name in MODULES}
    assert tops <= set(RANKS), f"give {sorted(tops - set(RANKS))} a rank in RANKS (and docs/architecture.md)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = rank(module)
    upward = [
        f"{module} (rank {own}) line {line}: {written!r} imports {target} (rank {rank(target)})"
        for line, target, written in imported_modules(module, MODULES[module])
        if own is not None and rank(target) is not None and rank(target) > own
    ]
    assert not upward, "\n".join(upward)


def test_the_check_sees_imports_in_functions_and_under_type_checking(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mixcse_hf.training.trainer import MixCSETrainer\n"
        "def f():\n    import mixcse_hf.cli.encode\n    from mixcse_hf import MixCSETrainer\n"
        "from ..hub import card\n"
    )
    path = tmp_path / "example.py"
    path.write_text(source, encoding="utf-8")
    targets = [target for _, target, _ in imported_modules("mixcse_hf.models.example", path)]
    assert targets == [
        "mixcse_hf.training.trainer",
        "mixcse_hf.cli.encode",
        "mixcse_hf.training.trainer",
        "mixcse_hf.hub.card",
    ]
