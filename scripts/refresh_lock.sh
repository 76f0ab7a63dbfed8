#!/usr/bin/env bash
# Rewrite constraints.txt, the lock of the published numbers: a fresh virtual environment gets the package with its
# dev extra, the packages named (NAME==VERSION arguments) at those versions and every other package at the lock's,
# and the lock becomes every package installed there. Run it in the root of the checkout:
#   bash scripts/refresh_lock.sh [NAME==VERSION ...]
# A named package whose new version needs another release of an unnamed one fails to install: name that one too.
# docs/install.md says what to rerun after a refresh.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
named=()
for pin in "$@"; do
    named+=("${pin%%[=<>!~]*}")
done
kept="$work/kept.txt"  # the lock without the named packages
grep -v '^#' constraints.txt | grep -viE "^($(IFS='|'; echo "${named[*]:-^$}"))==" >"$kept" || true
python3 -m venv "$work/env"
"$work/env/bin/pip" install -q -e ".[dev]" "$@" -c "$kept"
{
    echo "# The lock: the exact environment the published numbers were measured with (docs/install.md)."
    echo "# Install through it: pip install -e \".[dev]\" -c constraints.txt; rewrite it: bash scripts/refresh_lock.sh"
    "$work/env/bin/pip" freeze --all --exclude-editable | grep -v -e "^mixcse[-_]hf" -e "^pip==" |
        sed 's/^torch==\(.*\)+cpu$/torch==\1/'
} >"$work/constraints.txt"
mv "$work/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
