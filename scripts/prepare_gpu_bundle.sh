#!/usr/bin/env bash
# Fill the git-ignored .gpu_bundle/ that scripts/gpu_check.sh uses on a GPU machine without internet: wheels of
# every package the check needs except torch (the GPU machine's own CUDA build), all-MiniLM-L6-v2 in bf16 with
# its tokenizer, and the quick start's data (wiki head, STS-B dev/test). Run it in the root of the checkout, on a
# machine with internet where pip install -e ".[dev]" has been done; it ends by printing the bundle's size.
#   MIXCSE_DATA_DIR=../shared/data bash scripts/prepare_gpu_bundle.sh [BUNDLE_DIR]
# The wheels are for the Python that runs this script; GPU_BUNDLE_PYTHON=3.12 downloads them for another version.
# GPU_BUNDLE_ONLY="datasets evaluate dill multiprocess" bundles only the packages the GPU machine's Python lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-.gpu_bundle}"
python_version="${GPU_BUNDLE_PYTHON:-$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
mkdir -p "$bundle"
rm -rf "$bundle/wheels" "$bundle/site"  # one version of each package: two stop the install on the GPU machine
only=()
[ -n "${GPU_BUNDLE_ONLY:-}" ] && read -r -a only <<<"--only $GPU_BUNDLE_ONLY"
read -r -a requirements <<<"$(python scripts/gpu_bundle.py wheels "${only[@]}")"
python -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform linux_x86_64 -d "$bundle/wheels" "${requirements[@]}"
python scripts/gpu_bundle.py model --bundle "$bundle"
python scripts/gpu_bundle.py data --bundle "$bundle"
python scripts/gpu_bundle.py manifest --bundle "$bundle"
echo "${#requirements[@]} wheels in $bundle/wheels"
python scripts/gpu_bundle.py size --bundle "$bundle"
