#!/usr/bin/env bash
# The GPU check (docs/gpu.md) as one command, run in the root of the checkout on a machine with a CUDA GPU:
#   bash scripts/gpu_check.sh [PART ...]           # after pip install -e ".[dev]" with a CUDA build of torch
#   bash scripts/gpu_check.sh --smoke [PART ...]   # every part at toy size on a CPU
# Without internet, copy the folder scripts/prepare_gpu_bundle.sh fills (.gpu_bundle/, or GPU_BUNDLE) into the
# checkout first: mixcse_hf is installed from the checkout with its dependencies from the bundle's wheels (no
# index; the machine's own torch is kept where it is in the package's range) and the bundle's model and data are
# used. Runs the parts (environment tests quickstart throughput compile) in order of value, each under
# its own time limit, within GPU_CHECK_BUDGET seconds (default 400), and writes OUT/gpu_check.{json,md,log} and
# OUT/gpu_tests.xml (OUT defaults to outputs/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=()
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=(--smoke)
    shift
fi
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(environment tests quickstart throughput compile)
OUT="${OUT:-outputs/gpu_check}"
mkdir -p "$OUT"
bundle="${GPU_BUNDLE:-.gpu_bundle}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_UPDATE_DOWNLOAD_COUNTS=0 TOKENIZERS_PARALLELISM=false
if [[ ${#smoke[@]} -eq 0 && -d "$bundle/wheels" ]]; then
    echo "installing mixcse_hf from the checkout, its dependencies from $bundle/wheels (the machine's torch kept)"
    python3 -m pip install -q --no-index --find-links "$bundle/wheels" -e ".[st]" pytest || exit 2
fi
declare -A limit=([environment]=45 [tests]=100 [quickstart]=120 [throughput]=200 [compile]=90)
deadline=$((SECONDS + ${GPU_CHECK_BUDGET:-400}))
log="$OUT/gpu_check.log"
echo "GPU check: parts ${parts[*]}, results in $OUT" | tee -a "$log"
for part in "${parts[@]}"; do
    left=$((deadline - SECONDS))
    seconds=$((left < ${limit[$part]} ? left : ${limit[$part]}))
    if [[ ${#smoke[@]} -gt 0 ]]; then
        seconds=600  # toy sizes on a CPU: no limit worth keeping
    elif ((seconds < 20)); then
        python3 scripts/gpu_check.py failed "$part" 124 --out "$OUT"
        continue
    fi
    echo "== $part (at most ${seconds} s)" | tee -a "$log"
    timeout -k 10 "$seconds" python3 scripts/gpu_check.py "$part" --out "$OUT" --bundle "$bundle" "${smoke[@]}" \
        2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    if ((rc != 0)); then
        echo "== $part exited with $rc" | tee -a "$log"
        python3 scripts/gpu_check.py failed "$part" "$rc" --out "$OUT"
    fi
done
python3 scripts/gpu_check.py report --out "$OUT"
