"""Export a saved model for CPU serving: ONNX (float32), and int8 and OpenVINO when asked, into its folder.

    mixcse-export MODEL_DIR [--int8] [--int8_vnni] [--openvino] [--senteval_dir DIR]

(also ``python -m mixcse_hf.cli.export``). The files take sentence-transformers' layout and names, which
``SentenceTransformer(MODEL_DIR, backend="onnx")`` reads, and mixcse-encode, mixcse-eval and mixcse-mine run them
with --backend onnx|openvino [--file_name F]:

  onnx/model.onnx               float32, always (the others are made from it)
  onnx/model_quint8_avx2.onnx   --int8: ONNX Runtime's dynamic int8 quantization, sentence-transformers' avx2
                                configuration (uint8 weights), which every x86-64 CPU with AVX2 runs
  onnx/model_qint8_avx512_vnni.onnx
                                --int8_vnni: its avx512_vnni configuration (int8 weights), for CPUs with
                                AVX512-VNNI or AMX, where it runs natively
  openvino/openvino_model.xml   --openvino: OpenVINO IR (+ .bin), float32

Each graph is the encoder; the pooler recorded with the model is applied after it, so every pooler with a
sentence-transformers equivalent exports and gives the torch embedding (the others are refused). Each folder's
mixcse_export.json records the sha256 of the model.safetensors a file was made from: the commands refuse a file
whose model was trained on since, naming this command. --senteval_dir DIR also measures STS-B test (Spearman x100)
of the torch model and of each file and records it there. A folder saved by training gets its README.md (the model
card) rewritten to list the files. Needs pip install "mixcse_hf[onnx]" (and "mixcse_hf[openvino]" for --openvino).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mixcse_hf.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixcse-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a saved model folder: a run's output_dir, a checkpoint")
    parser.add_argument("--int8", action="store_true", help="also write onnx/model_quint8_avx2.onnx (int8)")
    parser.add_argument(
        "--int8_vnni", action="store_true", help="also write onnx/model_qint8_avx512_vnni.onnx (int8, VNNI CPUs)"
    )
    parser.add_argument("--openvino", action="store_true", help="also write openvino/openvino_model.xml")
    parser.add_argument(
        "--senteval_dir",
        help="SentEval-layout data directory: measure STS-B test of the torch model and of each file, for the card",
    )
    return parser


def requested_kinds(int8: bool, openvino: bool, int8_vnni: bool = False) -> list[str]:
    """The keys of :data:`mixcse_hf.models.exports.EXPORTS` to write: ``onnx`` first (the others are made from it)."""
    return ["onnx", *(["int8"] * int8), *(["int8_vnni"] * int8_vnni), *(["openvino"] * openvino)]


def export_folder(
    model_dir: str, kinds: Sequence[str], senteval_dir: str | None = None, keep_fresh: bool = False
) -> list[str]:
    """Write the ``kinds`` of export into ``model_dir``, record each with the weights' fingerprint (and its STS-B test
    Spearman with ``senteval_dir``) and rewrite the card of a folder saved by training; ``keep_fresh``: leave a file
    that is already fresh as it is. Everything is checked before anything is written. Returns the summary lines."""
    from mixcse_hf.evaluation.sts import score_task
    from mixcse_hf.evaluation.sts_data import load_task
    from mixcse_hf.models import backends
    from mixcse_hf.models.exports import BACKENDS, EXPORTS, exported_files, record_export, weights_fingerprint

    backends.check_exportable(model_dir)
    for kind in kinds:
        backends.check_backend_installed(BACKENDS[EXPORTS[kind].backend])
    stsb = load_task("stsb", "test", senteval_dir) if senteval_dir else None
    fingerprint = weights_fingerprint(model_dir)
    fresh = exported_files(model_dir) if keep_fresh else {}
    lines = []
    if stsb is not None:
        torch_score = score_task(backends.load_backend_encoder(model_dir), "stsb", stsb).all
        lines.append(f"torch (float32, the checkpoint): STS-B test {torch_score:.2f}")
    for kind in kinds:
        export = EXPORTS[kind]
        if export.path in fresh:
            lines.append(f"{export.path}: fresh, kept")
            continue
        backends.write_export(model_dir, kind)
        record_export(model_dir, export, fingerprint, None)
        score = None
        if stsb is not None:  # the file is recorded: it loads as the commands load it
            encoder = backends.load_exported_encoder(model_dir, export.backend, export.file_name)
            score = score_task(encoder, "stsb", stsb).all
            record_export(model_dir, export, fingerprint, score)
        written = os.path.join(model_dir, export.path)
        size = sum(os.path.getsize(p) for p in (written, os.path.splitext(written)[0] + ".bin") if os.path.isfile(p))
        size /= 2**20  # with OpenVINO's weights file
        measured = f", STS-B test {score:.2f}" if score is not None else ""
        lines.append(f"{export.path}: {export.description}, {size:.1f} MiB{measured}")
    rewrite_card(model_dir)
    return lines


def rewrite_card(model_dir: str) -> None:
    """The README.md of a folder saved by training (it has the card's data), listing the fresh exported files."""
    from dataclasses import replace

    from mixcse_hf.hub.card import write_readme
    from mixcse_hf.models.exports import exported_files
    from mixcse_hf.training.run_dir import read_card_data

    card = read_card_data(model_dir)
    if card is not None:
        write_readme(model_dir, replace(card, exports=exported_files(model_dir)))


def export_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    lines = export_folder(args.model_dir, requested_kinds(args.int8, args.openvino, args.int8_vnni), args.senteval_dir)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """``mixcse-export`` on ``argv`` (default ``sys.argv[1:]``) -> exit status (2: a one-line input error)."""
    return run_cli(export_command, argv)


if __name__ == "__main__":
    sys.exit(main())
