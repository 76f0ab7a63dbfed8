#!/usr/bin/env bash
# Short bf16 MixCSE training of a bert-base-sized encoder on one GPU (random init, synthetic data: no downloads);
# prints sentences/s and peak GPU memory. Takes about a minute on a recent GPU, well under 5.
#   bash scripts/gpu_check.sh                 # batch 64, 512, 512 with GradCache (64), 512 padding-free; length 32
#   bash scripts/gpu_check.sh --smoke         # 2 CPU steps of a small encoder: checks the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--smoke" ]]; then
    exec python scripts/gpu_check.py --smoke
fi
python scripts/gpu_check.py --batch_size 64 "$@"
python scripts/gpu_check.py --batch_size 512 --steps 20 "$@"
python scripts/gpu_check.py --batch_size 512 --steps 20 --gradcache_mini_batch_size 64 "$@"
python scripts/gpu_check.py --batch_size 512 --steps 20 --padding_free "$@"
