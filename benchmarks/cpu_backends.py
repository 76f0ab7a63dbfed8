"""Serving on the CPU: ``mixcse-encode`` with each backend on the same model and sentences, then the 7-task STS
average of each (``mixcse-eval`` with the same backend).

    MIXCSE_DATA_DIR=../shared/data python benchmarks/cpu_backends.py MODEL_DIR [--sentences 5000] [--rounds 3]
        [--batch_size 64] [--variants torch_fp32 torch_bf16 onnx_fp32 onnx_int8 onnx_int8_vnni openvino]
        [--no_sts | --no_speed]
        [--results FILE]

MODEL_DIR holds the files of ``mixcse-export MODEL_DIR --int8 --int8_vnni --openvino``. Each encoding runs in its
own fresh process (peak RSS is that variant's own), the variants alternate over the rounds (in reversed order every
other round), and each output is compared with torch float32's. ``torch_bf16`` (the weights in bfloat16) runs only where
the CPU has native bf16 (AVX512-BF16 or AMX); ``openvino`` only where its package is installed. A measurement runs
from loading the model to the embeddings saved; its process CPU seconds are recorded too (on a shared machine the
wall clock of any variant moves with other jobs, its CPU seconds much less).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from encode_cli import write_input

RESULTS = os.path.join(os.path.dirname(__file__), "results", "cpu_backends.json")
VARIANTS = {
    "torch_fp32": [],
    "torch_bf16": ["--dtype", "bfloat16"],
    "onnx_fp32": ["--backend", "onnx"],
    "onnx_int8": ["--backend", "onnx", "--file_name", "model_quint8_avx2.onnx"],
    "onnx_int8_vnni": ["--backend", "onnx", "--file_name", "model_qint8_avx512_vnni.onnx"],
    "openvino": ["--backend", "openvino"],
}
"""mixcse-encode's (and mixcse-eval's) flags of each variant."""
REFERENCE = "torch_fp32"


def child_main(argv: list[str]) -> None:
    """``mixcse-encode MODEL INPUT OUTPUT`` with the variant's flags in this process; prints one RESULT line."""
    variant, model, input_file, output, batch_size = argv
    from mixcse_hf.cli.encode import main

    flags = ["--batch_size", batch_size, "--device", "cpu", "--normalize", "--overwrite", *VARIANTS[variant]]
    stderr = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(stderr):
        status = main([model, input_file, output, *flags])
    if status != 0:
        raise RuntimeError(f"mixcse-encode failed ({status}): {stderr.getvalue()[-2000:]}")
    result = {
        "variant": variant,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(variant: str, model: str, input_file: str, output: str, batch_size: int) -> dict:
    from harness import child_result  # not at the top: harness loads torch, which a child must not pay for

    return child_result(__file__, [variant, model, input_file, output, str(batch_size)], variant)


def sts_average(variant: str, model: str, senteval_dir: str, directory: str) -> dict:
    """``mixcse-eval`` on the 7 tasks with the variant's flags; its report (average and per-task Spearman)."""
    output = os.path.join(directory, f"sts_{variant}.json")
    command = [sys.executable, "-m", "mixcse_hf.cli.evaluate", "--model_name_or_path", model]
    command += ["--senteval_dir", senteval_dir, "--output_json", output, *VARIANTS[variant]]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"mixcse-eval {variant} failed:\n{process.stderr[-3000:]}")
    with open(output, encoding="utf-8") as handle:
        report = json.load(handle)
    return {"average": report["average"], "tasks": {task: score["all"] for task, score in report["tasks"].items()}}


def min_cosine(output: str, reference: str) -> float:
    """The lowest cosine between a variant's unit embeddings and the reference's, row by row."""
    return float((np.load(output) * np.load(reference)).sum(axis=1).min())


def available_variants(requested: list[str]) -> tuple[list[str], dict[str, str]]:
    """The variants this machine runs, and why each other one is left out."""
    from mixcse_hf.training.precision import cpu_has_native_bf16

    skipped = {}
    if "torch_bf16" in requested and not cpu_has_native_bf16():
        skipped["torch_bf16"] = "no native bf16 on this CPU (AVX512-BF16 or AMX)"
    if "openvino" in requested and importlib.util.find_spec("openvino") is None:
        skipped["openvino"] = 'its package is not installed (pip install "mixcse_hf[openvino]")'
    return [variant for variant in requested if variant not in skipped], skipped


def summarise(results: list[dict], count: int) -> dict[str, float]:
    return {
        "sentences_per_second": count / statistics.median(r["seconds"] for r in results),
        "best_sentences_per_second": count / min(r["seconds"] for r in results),
        "sentences_per_cpu_second": count / statistics.median(r["cpu_seconds"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
    }


def table(summary: dict[str, dict], cosines: dict[str, float], sts: dict[str, dict]) -> str:
    """One row per variant: speed columns where measured, the STS average where measured."""
    reference = summary.get(REFERENCE, {}).get("sentences_per_second")
    rows = [
        "| variant | sentences/s (median) | ratio to torch fp32 | sentences per CPU-s | peak RSS (MB) "
        "| min cosine to torch fp32 | STS avg (7 tasks) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in dict.fromkeys([*summary, *sts]):
        cells = ["-"] * 5
        if variant in summary:
            values = summary[variant]
            cells = [
                f"{values['sentences_per_second']:.1f}",
                f"{values['sentences_per_second'] / reference:.2f}",
                f"{values['sentences_per_cpu_second']:.1f}",
                f"{values['peak_rss_mb']:.0f}",
                f"{cosines[variant]:.5f}",
            ]
        average = f"{sts[variant]['average']:.2f}" if variant in sts else "-"
        rows.append(f"| {variant} | " + " | ".join(cells) + f" | {average} |")
    return "\n".join(rows)


def measure_speed(args: argparse.Namespace, variants: list[str]) -> tuple[dict, dict, dict]:
    """The alternating rounds: (runs by variant, their summary, min cosine of each to torch fp32)."""
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as directory:
        input_file = write_input(directory, args.sentences)
        outputs = {variant: os.path.join(directory, f"{variant}.npy") for variant in variants}
        for round_index in range(args.rounds):
            for variant in variants if round_index % 2 == 0 else variants[::-1]:
                result = run_child(variant, args.model_dir, input_file, outputs[variant], args.batch_size)
                runs[variant].append(result)
                print(
                    f"round {round_index + 1}/{args.rounds} {variant}: {result['seconds']:.1f} s "
                    f"({result['cpu_seconds']:.1f} CPU-s), {result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        cosines = {variant: min_cosine(outputs[variant], outputs[REFERENCE]) for variant in variants}
    summary = {variant: summarise(results, args.sentences) for variant, results in runs.items()}
    return runs, summary, cosines


def measure_sts(args: argparse.Namespace, variants: list[str], save: Callable[[dict], None]) -> dict[str, dict]:
    """Each variant's 7-task report, in turn; ``save`` gets what is measured so far after each."""
    senteval_dir = os.path.join(os.environ.get("MIXCSE_DATA_DIR", "../shared/data"), "senteval")
    sts = {}
    with tempfile.TemporaryDirectory() as directory:
        for variant in variants:
            sts[variant] = sts_average(variant, args.model_dir, senteval_dir, directory)
            print(f"{variant}: 7-task STS average {sts[variant]['average']:.2f}", flush=True)
            save(sts)
    return sts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--sentences", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--no_sts", action="store_true", help="skip the 7-task STS averages")
    parser.add_argument("--no_speed", action="store_true", help="only the 7-task STS averages")
    parser.add_argument("--results", default=RESULTS, help=f"where the JSON record goes (default {RESULTS})")
    args = parser.parse_args()
    from harness import machine

    variants, skipped = available_variants(args.variants)
    if REFERENCE not in variants:
        variants.insert(0, REFERENCE)
    for variant, why in skipped.items():
        print(f"{variant}: left out, {why}", flush=True)
    load_before = os.getloadavg()
    record = {"machine": machine(), "options": vars(args), "skipped": skipped, "load_average": [load_before]}
    runs, summary, cosines = ({}, {}, {}) if args.no_speed else measure_speed(args, variants)
    record.update(summary=summary, min_cosine_to_torch_fp32=cosines, runs=runs)
    sts = {} if args.no_sts else measure_sts(args, variants, lambda done: write_record(args.results, record, sts=done))
    record["load_average"].append(os.getloadavg())
    write_record(args.results, record, sts=sts)
    print(
        f"\n{args.sentences} wiki sentences, {args.model_dir}, batch {args.batch_size}, {args.rounds} rounds; "
        f"1-min load average {record['load_average'][0][0]:.2f} before, {record['load_average'][1][0]:.2f} after\n"
    )
    print(table(summary, cosines, sts))


def write_record(path: str, record: dict, **more: object) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({**record, **more}, handle, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        main()
