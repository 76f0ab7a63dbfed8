"""``run_mixcse.py --help``: our arguments in groups, fast (no torch or transformers import); ``--help_all`` adds
every ``transformers.TrainingArguments`` field.

The help is rendered by argparse from the argument dataclasses' fields and ``help`` metadata; parsing is done by
:func:`mixcse_hf.training.config.parse_run_args`, which reads the same fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from mixcse_hf.training.arguments import LOSS_OPTIONS, DataArguments, MixCSEOptions, ModelArguments
from mixcse_hf.training.config import DEFAULTS_CONFIG, config_less_defaults

PROG = "run_mixcse.py"
HELP_FLAGS = ("-h", "--help")
HELP_ALL_FLAG = "--help_all"
DEBUG_FLAG = "--debug"

GROUPS: dict[str, tuple[str, list[str]]] = {
    "model": (
        "The encoder and its sentence embedding.",
        [
            "model_name_or_path",
            "reinit_mlp",
            "pooler_type",
            "mlp_only_train",
            "bidirectional",
            "train_dropout",
            "prompts",
            "include_prompt",
        ],
    ),
    "data": (
        "train_file or dataset_name; text_column: sentences, text_columns: pairs.",
        [field.name for field in dataclasses.fields(DataArguments) if field.name != "senteval_dir"],
    ),
    "MixCSE loss": (
        "Mixed negatives: mixed_negatives with in-batch ones; mixed_hard_negative with a triplet's own, which "
        "hard_negative_weight weights.",
        [*LOSS_OPTIONS, "log_gradient_signal"],
    ),
    "LoRA": (
        "Parameter-efficient training with PEFT.",
        ["use_lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_lora"],
    ),
    "GradCache and padding-free": (
        "Large batches in bounded memory; less compute per batch.",
        ["gradcache_mini_batch_size", "padding_free", "pack_length"],
    ),
    "precision": (
        "precision, or the Trainer's bf16/fp16 flags when given.",
        ["precision", "bf16", "fp16"],
    ),
    "evaluation": (
        "STS-B Spearman before and after training and during it (eval_strategy, eval_steps); do_eval false turns "
        "all of it off.",
        ["do_eval", "senteval_dir", "start_evaluation"],
    ),
    "run and resume": (
        "One output_dir holds one run: a re-run resumes it.",
        ["do_train", "overwrite_output_dir", "resume_changed_settings"],
    ),
    "Trainer defaults changed for contrastive training": (
        None,
        ["dataloader_drop_last", "ddp_find_unused_parameters", "ddp_broadcast_buffers", "remove_unused_columns"],
    ),
}
"""Title -> (description, field names): every field of the three dataclasses, each once, in display order."""

COMMON_TRAINER_OPTIONS = (
    "output_dir",
    "per_device_train_batch_size",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "seed",
    "eval_strategy",
    "eval_steps",
    "save_steps",
    "logging_steps",
    "load_best_model_at_end",
    "metric_for_best_model",
    "push_to_hub",
    "hub_model_id",
    "report_to",
    "resume_from_checkpoint",
)
"""Named in the short help's closing lines (unless the defaults of a run without a config name them there);
``--help_all`` describes them."""

_PLAIN_TYPE = re.compile(r"\b(bool|int|float|str|list|dict)\b")

DESCRIPTION = (
    "Train a sentence encoder with MixCSE. CONFIG.yaml (or .json) holds argument values, which flags override "
    "(--KEY null unsets one); --version prints the stack's versions."
)


def help_request(argv: Sequence[str]) -> str | None:
    """The help text ``argv`` asks for (``--help_all`` or ``-h``/``--help``), else None."""
    if HELP_ALL_FLAG in argv:
        return help_text(trainer_options=True)
    if any(flag in argv for flag in HELP_FLAGS):
        return help_text()
    return None


def help_text(trainer_options: bool = False) -> str:
    """Our arguments by group; with ``trainer_options``, every other ``TrainingArguments`` field after them."""
    fields = {
        field.name: field for cls in (ModelArguments, DataArguments, MixCSEOptions) for field in dataclasses.fields(cls)
    }
    defaults = config_less_defaults()
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [CONFIG.yaml] [--ARGUMENT VALUE ...]",
        description=DESCRIPTION,
        epilog=_config_less_note(fields, defaults) + ("" if trainer_options else " " + _trainer_options_note(defaults)),
    )
    command_line = parser.add_argument_group("command line")
    command_line.add_argument("CONFIG.yaml", nargs="?", help="YAML/JSON file, or a shipped config: quickstart")
    command_line.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error, not one line")
    command_line.add_argument(HELP_ALL_FLAG, action="store_true", help="also list the Trainer's options")
    for title, (description, names) in GROUPS.items():
        _add_fields(parser.add_argument_group(title, description), (fields[name] for name in names))
    if trainer_options:
        from transformers import TrainingArguments  # only here: importing it takes seconds

        # The Trainer's own debug field (e.g. underflow_overflow) is a config key only: --debug is ours.
        others = [f for f in dataclasses.fields(TrainingArguments) if f.init and f.name not in {*fields, "debug"}]
        group = parser.add_argument_group(
            "Trainer options",
            "transformers.TrainingArguments fields. Its debug field can be set in a config only: on the command "
            "line --debug shows tracebacks.",
        )
        _add_fields(group, others)
    return parser.format_help()


def _config_less_note(fields: dict[str, dataclasses.Field], defaults: dict[str, Any]) -> str:
    """The values a run without a config takes (``defaults``), less those the options above show as their
    defaults."""
    changed = {key: value for key, value in defaults.items() if key not in fields or _default(fields[key]) != value}
    pairs = ", ".join(f"{key} {_shown(value)}" for key, value in changed.items())
    return (
        f"Without CONFIG.yaml, the shipped {DEFAULTS_CONFIG} config's training settings are the defaults: those "
        f"above and {pairs}."
    )


def _trainer_options_note(defaults: dict[str, Any]) -> str:
    """The Trainer's common options, less those ``defaults`` (a run without a config's) already name."""
    named = [name for name in COMMON_TRAINER_OPTIONS if name not in defaults]
    return (
        "Every transformers.TrainingArguments field is accepted too, e.g. "
        + ", ".join(named)
        + f"; {HELP_ALL_FLAG} describes them all."
    )


def _add_fields(group: argparse._ArgumentGroup, fields: Iterable[dataclasses.Field]) -> None:
    for field in fields:
        kind = _value_type(field)
        options: dict[str, Any] = {"help": _field_help(field)}
        if kind == "bool":
            options["metavar"] = "{true,false}"
        elif kind == "list":
            options.update(nargs="+", metavar="VALUE")
        else:
            options["metavar"] = kind.upper()
        group.add_argument(f"--{field.name}", **options)


def _value_type(field: dataclasses.Field) -> str:
    """The first plain type in the field's annotation (a string in our dataclasses, a type in the Trainer's)."""
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    found = _PLAIN_TYPE.search(annotation)
    return found.group(1) if found else "value"


def _field_help(field: dataclasses.Field) -> str:
    text = field.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
    default = _default(field)
    if default in (None, "", []):
        return text
    return f"{text} (default: {_shown(default)})"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return getattr(field.default, "value", field.default)  # enums (e.g. eval_strategy) show their value
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None
