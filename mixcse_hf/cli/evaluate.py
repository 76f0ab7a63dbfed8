"""The 7-task STS table of the SimCSE/MixCSE papers, offline, in one command.

    mixcse-eval --model_name_or_path PATH [--pooler P] [--tasks sts12 ... sickr]
        [--mode test|dev|fasttest] [--senteval_dir DIR] [--output_json FILE]
        [--backend torch|onnx|openvino] [--file_name F]

(also ``python -m mixcse_hf.cli.evaluate``). SentEval protocol as SimCSE's ``evaluation.py``: cosine similarity,
Spearman x 100; STS12-16 report "all" (subsets concatenated) plus "mean"/"wmean"; STS-B and SICK-R their test
split (dev/trial with ``--mode dev``). ``fasttest`` equals ``test`` here: SimCSE's modes differ only in the
k-fold of transfer tasks, which STS does not use. ``--backend onnx|openvino`` scores a file that mixcse-export wrote
into the model folder (``--file_name model_quint8_avx2.onnx``: the int8 one).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass, field

from transformers import HfArgumentParser

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.evaluation.sts import TaskScore, alignment_uniformity, encode_pairs, score_embeddings
from mixcse_hf.evaluation.sts_data import STS_YEARS, TASKS, StsPairs, file_sha256, load_task
from mixcse_hf.models.backends import Encoder, check_backend_options, load_backend_encoder, torch_only_options
from mixcse_hf.models.exports import BACKEND_NAMES
from mixcse_hf.models.pooling import POOLER_TYPES
from mixcse_hf.output_files import check_output_file, write_json_atomically

logger = logging.getLogger(__name__)
DEV_TASKS = ("stsb", "sickr")
TASK_NAMES = {"stsb": "STS-B", "sickr": "SICK-R", **{name: name.upper() for name in STS_YEARS}}


@dataclass
class EvalArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "mixcse_hf checkpoint, plain HF encoder directory, sentence-transformers directory or Hub id."
        }
    )
    pooler: str | None = field(
        default=None,
        metadata={
            "help": "Pooler; default: the one a mixcse_hf checkpoint recorded, a sentence-transformers model's own "
            "pooling, else cls_before_pooler.",
            "choices": list(POOLER_TYPES),
        },
    )
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS),
        metadata={"help": "Tasks to run (default: all 7; --mode dev: stsb sickr).", "choices": list(TASKS)},
    )
    mode: str = field(
        default="test",
        metadata={
            "help": "test / fasttest: test splits; dev: STS-B dev and SICK-R trial.",
            "choices": ["test", "dev", "fasttest"],
        },
    )
    senteval_dir: str | None = field(
        default=None,
        metadata={"help": "SentEval-layout data directory (STS/, SICK/); unset: the MTEB copies on the Hub."},
    )
    output_json: str | None = field(default=None, metadata={"help": "Write every number to this JSON file."})
    batch_size: int = field(default=128, metadata={"help": "Sentences per encoding batch."})
    dtype: str = field(
        default="float32",
        metadata={
            "help": "Encode in this dtype (float16/bfloat16 are for GPUs).",
            "choices": ["float32", "float16", "bfloat16"],
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "Torch device; default: cuda (or another accelerator) if present, else cpu."}
    )
    padding_free: bool = field(
        default=False,
        metadata={"help": "Encode packed rows without pad tokens: the same embeddings, faster (BERT/RoBERTa/MPNet)."},
    )
    backend: str = field(
        default="torch",
        metadata={
            "help": "torch runs the checkpoint; onnx and openvino a file mixcse-export wrote into the model folder.",
            "choices": list(BACKEND_NAMES),
        },
    )
    file_name: str | None = field(
        default=None,
        metadata={
            "help": "The exported file (e.g. model_quint8_avx2.onnx, int8); default model.onnx / openvino_model.xml."
        },
    )


@dataclass
class EvalReport:
    model: str
    pooler: str
    mode: str
    tasks: dict[str, TaskScore]
    alignment_uniformity: dict[str, float] | None
    files: dict[str, str]
    backend: str = "torch"
    file_name: str | None = None

    @property
    def average(self) -> float:
        return sum(score.all for score in self.tasks.values()) / len(self.tasks)

    def to_json(self) -> dict:
        return {**asdict(self), "average": self.average}

    def table(self) -> str:
        served = "" if self.backend == "torch" else f" | {self.backend} {self.file_name or 'default file'}"
        lines = [f"{self.model}{served} | pooler {self.pooler} | mode {self.mode} | Spearman x100 (cosine)"]
        lines.append(f"{'task':<8} {'all':>7} {'mean':>7} {'wmean':>7} {'pairs':>6}")
        for task, score in self.tasks.items():
            lines.append(
                f"{TASK_NAMES[task]:<8} {score.all:>7.2f} {score.mean:>7.2f} {score.wmean:>7.2f} {score.pairs:>6}"
            )
        lines.append(f"{'Avg.':<8} {self.average:>7.2f}")
        if self.alignment_uniformity:
            lines.append(
                "STS-B alignment {alignment:.4f}, uniformity {uniformity:.4f}".format(**self.alignment_uniformity)
            )
        return "\n".join(lines)


def check_tasks(tasks: list[str], mode: str) -> list[str]:
    if mode != "dev":
        return tasks
    test_only = [task for task in tasks if task not in DEV_TASKS]
    if test_only and tasks != list(TASKS):
        raise UsageError(f"{', '.join(test_only)}: test split only; --mode dev evaluates stsb and sickr")
    return [task for task in tasks if task in DEV_TASKS]


def evaluate_model(encoder: Encoder, args: EvalArguments) -> EvalReport:
    """Load every requested task first (so bad data fails before encoding), then score them."""
    tasks = check_tasks(list(dict.fromkeys(args.tasks)), args.mode)
    split = "dev" if args.mode == "dev" else "test"
    data = {task: load_task(task, split, args.senteval_dir) for task in tasks}
    scores, align_uniform = {}, None
    for task, subsets in data.items():
        pairs = StsPairs.concat(subsets.values())
        first, second = encode_pairs(encoder, pairs, args.batch_size, desc=TASK_NAMES[task])
        scores[task] = score_embeddings(task, subsets, first, second)
        logger.info("%s: %d pairs, Spearman x100 (all) %.2f", TASK_NAMES[task], len(pairs), scores[task].all)
        if task == "stsb":  # the same embeddings: STS-B is encoded once
            alignment, uniformity = alignment_uniformity(pairs, first, second)
            align_uniform = {"alignment": alignment, "uniformity": uniformity}
    files = {
        path: file_sha256(path)
        for subsets in data.values()
        for pairs in subsets.values()
        for path in pairs.files
        if os.path.isfile(path)
    }
    return EvalReport(
        args.model_name_or_path,
        encoder.pooler_type,
        args.mode,
        scores,
        align_uniform,
        files,
        args.backend,
        args.file_name,
    )


def evaluate_command(argv: list[str]) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = HfArgumentParser(EvalArguments, prog="mixcse-eval").parse_args_into_dataclasses(args=argv)
    if args.output_json:
        check_output_file(args.output_json, "output_json")
    check_backend_options(
        args.model_name_or_path,
        args.backend,
        args.file_name,
        args.pooler,
        torch_only_options(args.dtype, args.device, args.padding_free),
    )
    encoder = load_backend_encoder(
        args.model_name_or_path,
        args.backend,
        args.file_name,
        args.pooler,
        args.dtype,
        args.device,
        padding_free=args.padding_free,
    )
    report = evaluate_model(encoder, args)
    print(report.table())
    if args.output_json:
        write_json_atomically(args.output_json, report.to_json(), indent=2)


def main(argv: list[str] | None = None) -> int:
    return run_cli(evaluate_command, argv)


if __name__ == "__main__":
    sys.exit(main())
