#!/usr/bin/env bash
# The GPU check of issue 14 as one command (docs/gpu.md): on the device tool's machine, with the bundle that
# scripts/prepare_device_bundle.sh fills here carried along:
#   run(command="bash scripts/device_check.sh", carry=[".device_bundle"], timeout_s=460)
#   bash scripts/device_check.sh --smoke [PART ...]    # every part at toy size on this CPU (OUT: a temp dir)
# Installs the carried wheels into /tmp/site (no dependencies, nothing from a registry), imports mixcse_hf from this
# checkout, runs the parts (environment tests quickstart throughput compile) each under its own time limit within
# DEVICE_CHECK_BUDGET seconds (default 400), and writes $OUT/device_check.{json,md,log} and $OUT/gpu_tests.xml.
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=()
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=(--smoke)
    shift
fi
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(environment tests quickstart throughput compile)
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
bundle="${MIXCSE_DEVICE_BUNDLE:-.device_bundle}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_UPDATE_DOWNLOAD_COUNTS=0 TOKENIZERS_PARALLELISM=false
if [[ ${#smoke[@]} -eq 0 ]]; then
    if [[ ! -d "$bundle/wheels" ]]; then
        echo "no $bundle/wheels: run bash scripts/prepare_device_bundle.sh on a machine with network and carry $bundle"
        exit 2
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$bundle"/wheels/*.whl || exit 2
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
declare -A limit=([environment]=45 [tests]=100 [quickstart]=120 [throughput]=200 [compile]=90)
deadline=$((SECONDS + ${DEVICE_CHECK_BUDGET:-400}))
log="$OUT/device_check.log"
echo "device check: parts ${parts[*]}, results in $OUT" | tee -a "$log"
for part in "${parts[@]}"; do
    left=$((deadline - SECONDS))
    seconds=$((left < ${limit[$part]} ? left : ${limit[$part]}))
    if [[ ${#smoke[@]} -gt 0 ]]; then
        seconds=600  # the CPU's toy sizes: no device time to save
    elif ((seconds < 20)); then
        python3 scripts/device_check.py failed "$part" 124 --out "$OUT"
        continue
    fi
    echo "== $part (at most ${seconds} s)" | tee -a "$log"
    timeout -k 10 "$seconds" python3 scripts/device_check.py "$part" --out "$OUT" --bundle "$bundle" "${smoke[@]}" \
        2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    if ((rc != 0)); then
        echo "== $part exited with $rc" | tee -a "$log"
        python3 scripts/device_check.py failed "$part" "$rc" --out "$OUT"
    fi
done
python3 scripts/device_check.py report --out "$OUT"
