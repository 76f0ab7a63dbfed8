"""The oldest supported stack: ``NAME==LOWER_BOUND`` for every requirement of the installed mixcse_hf (and of the
extras named) that has a lower bound, one a line, to pass to pip. ``.ci/run`` builds its second environment from it.

    python scripts/oldest_stack.py [--extras st quickstart] [--except torch]
"""

from __future__ import annotations

import argparse
from importlib.metadata import requires

from packaging.requirements import Requirement


def lower_bounds(extras: list[str], excluded: list[str]) -> list[str]:
    """``NAME==VERSION`` of each requirement's ``>=`` bound, base requirements and ``extras``' alike."""
    pins = []
    for line in requires("mixcse_hf") or []:
        requirement = Requirement(line)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
            continue
        bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if bounds and requirement.name not in excluded:
            pins.append(f"{requirement.name}=={bounds[0]}")
    return sorted(pins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extras", nargs="*", default=[], help="extras whose requirements are pinned too")
    parser.add_argument("--except", dest="excluded", nargs="*", default=[], help="requirements left out")
    args = parser.parse_args()
    print("\n".join(lower_bounds(args.extras, args.excluded)))


if __name__ == "__main__":
    main()
