#!/usr/bin/env bash
# Rewrite constraints.txt, the lock of the published numbers: a fresh virtual environment gets the package with
# its dev extra and the direct dependencies at the versions given (NAME==VERSION arguments; the lock's own where
# none is given), and the lock becomes every package installed there. Run it in the root of the checkout:
#   bash scripts/refresh_lock.sh [NAME==VERSION ...]
# docs/install.md says what to rerun after a refresh.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir="$(mktemp -d)/lock-env"
python3 -m venv "$env_dir"
direct=(torch transformers accelerate datasets evaluate peft scipy sentence-transformers mteb)
pins=("$@")
for name in "${direct[@]}"; do
    if ! printf '%s\n' "${pins[@]}" | grep -qi "^${name}=="; then
        pins+=("$(grep -i "^${name}==" constraints.txt)")
    fi
done
"$env_dir/bin/pip" install -q -e ".[dev]" "${pins[@]}"
{
    echo "# The lock: the exact environment the published numbers were measured with (docs/install.md)."
    echo "# Install through it: pip install -e \".[dev]\" -c constraints.txt; rewrite it: bash scripts/refresh_lock.sh"
    "$env_dir/bin/pip" freeze --all --exclude-editable | grep -v -e "^mixcse[-_]hf" -e "^pip==" | sed 's/^torch==\(.*\)+cpu$/torch==\1/'
} >constraints.txt
rm -rf "$(dirname "$env_dir")"
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
