"""YAML/JSON run configs: file values become argument defaults, command-line flags override them; without a file,
the shipped quick start's training settings are the defaults.

Importing this module is fast (no torch or transformers): :func:`parse_run_args` runs the checks that need no
library first, and imports the arguments' stack only after them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from mixcse_hf.errors import UsageError
from mixcse_hf.training.arguments import DataArguments, ModelArguments
from mixcse_hf.training.run_lock import check_not_in_use

if TYPE_CHECKING:
    from transformers import HfArgumentParser

    from mixcse_hf.training.training_args import MixCSETrainingArguments

logger = logging.getLogger(__name__)

RunArguments = tuple[ModelArguments, DataArguments, "MixCSETrainingArguments"]
_ENV_VAR = re.compile(r"\$\$|\$\{(\w+)\}")
"""``${VAR}`` (read from the environment) or ``$$`` (a literal ``$``) in a config's string value."""


def _usage_error(message: str) -> None:
    raise UsageError(message)


def build_parser() -> HfArgumentParser:
    """The parser of every argument; its errors (bad flag, bad value) are one-line :class:`UsageError` s."""
    from transformers import HfArgumentParser

    from mixcse_hf.training.training_args import MixCSETrainingArguments

    parser = HfArgumentParser((ModelArguments, DataArguments, MixCSETrainingArguments))
    parser.error = _usage_error
    return parser


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def shipped_configs() -> dict[str, str]:
    """The configs the package ships (``mixcse_hf/configs``, also ``configs/`` in a checkout): name -> path."""
    folder = importlib.resources.files("mixcse_hf") / "configs"
    return {entry.name.removesuffix(".yaml"): str(entry) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


DEFAULTS_CONFIG = "quickstart"
"""The shipped config whose training settings are the defaults of a run without a config."""
NOT_DEFAULTS = ("model_name_or_path", "train_file", "senteval_dir", "output_dir", "pooler_type", "mlp_only_train")
"""The keys of :data:`DEFAULTS_CONFIG` that a run without a config does not take: the quick start's own inputs and
outputs, and its pooler (a choice for its backbone)."""


def config_less_defaults() -> dict[str, Any]:
    """The defaults of a run without a config: :data:`DEFAULTS_CONFIG`'s values, less :data:`NOT_DEFAULTS`."""
    values = read_config_file(shipped_configs()[DEFAULTS_CONFIG])
    return {key: value for key, value in values.items() if key not in NOT_DEFAULTS}


def config_file_path(name_or_path: str) -> str:
    """A config's path: ``name_or_path`` itself when it is a path (a file there, a folder in it or a config suffix),
    else the shipped config of that name (``quickstart``: the package's ``configs/quickstart.yaml``)."""
    if os.path.isfile(name_or_path) or os.sep in name_or_path or name_or_path.endswith(CONFIG_SUFFIXES):
        return name_or_path
    shipped = shipped_configs()
    if name_or_path not in shipped:
        raise UsageError(
            f"config {name_or_path!r} is neither a file nor a shipped config; the shipped ones: "
            f"{', '.join(sorted(shipped))}"
        )
    return shipped[name_or_path]


def read_config_file(path: str) -> dict[str, Any]:
    """A flat mapping of argument names to values from a ``.yaml``/``.yml``/``.json`` file."""
    if not os.path.isfile(path):
        raise UsageError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        try:
            values = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1})" if where else ""
            raise UsageError(f"config file {path!r} is not valid YAML/JSON{line}; fix its syntax") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"config file {path!r} must be a mapping of argument names to values")
    return values


def _expand_env(value: Any, key: str) -> Any:
    """Replace ``${VAR}`` in a string value by the environment's ``VAR`` (unset: an error) and ``$$`` by ``$``; any
    other ``$`` is text (``run_name: budget$v2``)."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name not in os.environ:
            raise UsageError(f"config key {key!r} uses ${{{name}}}, which is not set; export {name}=...")
        return os.environ[name]

    return _ENV_VAR.sub(substitute, value)


def check_keys(values: dict[str, Any], parser: HfArgumentParser, source: str) -> None:
    # argparse has no public list of its options; _actions is the documented-in-practice way every tool reads it.
    known = {action.dest for action in parser._actions}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see run_mixcse.py --help"
            raise UsageError(f"unknown key {key!r} in {source}{hint}")


UNSET_VALUES = ("null",)
"""YAML's spelling of no value. Not ``none``: that is a value of ``report_to`` and ``mixed_negatives``."""


def take_unset_flags(flags: list[str], parser: HfArgumentParser) -> tuple[list[str], list[str]]:
    """``--key null`` (or ``--key=null``) unsets ``key``, e.g. a config's ``train_file`` when switching to
    ``dataset_name``: returns (the other flags, the keys to set to None). Only optional arguments can be unset."""
    nullable = {name for cls in parser.dataclass_types for name in _nullable_fields(cls)}
    kept, unset = [], []
    index = 0
    while index < len(flags):
        flag = flags[index]
        name, equals, inline = flag[2:].partition("=")
        value = inline if equals else (flags[index + 1] if index + 1 < len(flags) else None)
        if flag.startswith("--") and value in UNSET_VALUES:
            if name not in nullable:
                raise UsageError(f"--{name} cannot be unset (it has no null value); give it a value")
            unset.append(name)
            index += 1 if equals else 2
        else:
            kept.append(flag)
            index += 1
    return kept, unset


def _nullable_fields(cls: type) -> set[str]:
    """Fields annotated as optional (``X | None``), read from the annotations: HfArgumentParser rewrites the
    dataclass fields' types without ``None``."""
    return {
        name
        for klass in cls.__mro__
        for name, annotation in vars(klass).get("__annotations__", {}).items()
        if "None" in str(annotation) or "Optional" in str(annotation)
    }


def split_config_path(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [--flag value ...]`` -> (config path or name, or None; flags)."""
    if argv and not argv[0].startswith("-"):
        return argv[0], list(argv[1:])
    return None, list(argv)


def flag_values(flags: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """The values that ``--name value`` or ``--name=value`` flags give ``names`` (the last one wins)."""
    values = {}
    for index, flag in enumerate(flags):
        name, equals, inline = flag.removeprefix("--").partition("=")
        if flag.startswith("--") and name in names:
            if equals:
                values[name] = inline
            elif index + 1 < len(flags):
                values[name] = flags[index + 1]
    return values


BEST_MODEL_KEYS = (
    *("do_eval", "load_best_model_at_end", "eval_strategy", "save_strategy", "eval_steps", "save_steps"),
    "logging_steps",
)
TRUE_VALUES = ("true", "yes", "t", "y", "1")
"""How ``HfArgumentParser`` spells true."""


def check_best_model_intervals(values: Mapping[str, Any]) -> None:
    """``load_best_model_at_end`` keeps the best of the evaluated checkpoints, so every save must follow an
    evaluation. The Trainer's arguments refuse other intervals too, but only after seconds of imports and without
    naming a fix; ``values``: the raw config values and flags (a flag's value is a string)."""
    evaluation_off = values.get("do_eval") is not None and str(values["do_eval"]).lower() not in TRUE_VALUES
    if str(values.get("load_best_model_at_end")).lower() not in TRUE_VALUES or evaluation_off:
        return
    evaluation = str(values.get("eval_strategy", "no")).lower()
    saving = str(values.get("save_strategy", "steps")).lower()
    if saving == "best":
        return
    if evaluation != saving:
        fix = f"--eval_strategy {saving}" if evaluation == "no" else f"--save_strategy {evaluation}"
        raise UsageError(
            f"load_best_model_at_end keeps the best evaluated checkpoint, so save_strategy ({saving}) must match "
            f"eval_strategy ({evaluation}): pass {fix}, or --load_best_model_at_end false"
        )
    try:
        save_steps = float(values.get("save_steps", 500))
        eval_steps = float(values.get("eval_steps") or values.get("logging_steps", 500))
    except ValueError:
        return  # the parser names the bad number
    if evaluation == "steps" and save_steps >= 1 and eval_steps >= 1 and save_steps % eval_steps:
        raise UsageError(
            f"load_best_model_at_end keeps the best evaluated checkpoint, so save_steps {save_steps:g} must be a "
            f"multiple of eval_steps {eval_steps:g}: pass --eval_steps {save_steps:g} (or --save_steps "
            f"{eval_steps:g}), or --load_best_model_at_end false"
        )


LOCK_KEYS = ("output_dir", "do_train")
"""The flags :func:`check_output_dir_free` reads (only a training run takes the lock)."""


def check_output_dir_free(values: Mapping[str, Any]) -> None:
    """A run on an ``output_dir`` that another run holds is refused before the seconds of imports and model
    loading; the run takes the lock itself later (:mod:`.job`). Only the main process takes it, so only it checks
    (``RANK``, which ``accelerate launch`` and ``torchrun`` set). ``values``: the raw config values and flags."""
    if "output_dir" not in values or os.environ.get("RANK", "0") != "0":
        return
    if str(values.get("do_train", "true")).lower() in TRUE_VALUES:
        check_not_in_use(str(_expand_env(values["output_dir"], "output_dir")))


def config_values(name_or_path: str | None) -> tuple[str, dict[str, Any]]:
    """The config's path and values; without a config, :data:`DEFAULTS_CONFIG`'s path and
    :func:`config_less_defaults` (said in the log)."""
    if name_or_path is not None:
        path = config_file_path(name_or_path)
        return path, read_config_file(path)
    path = shipped_configs()[DEFAULTS_CONFIG]
    logger.info(
        "No config given: the shipped %s config's training settings (%s) are the defaults; flags override them",
        DEFAULTS_CONFIG,
        path,
    )
    return path, config_less_defaults()


def parse_run_args(argv: Sequence[str]) -> RunArguments:
    """Parse ``[CONFIG.yaml] [--flag value ...]`` into the three argument dataclasses; the checks that need no
    library come before the libraries are imported."""
    config_path, flags = split_config_path(argv)
    config_path, values = config_values(config_path)
    check_best_model_intervals({**values, **flag_values(flags, BEST_MODEL_KEYS)})
    check_output_dir_free({**values, **flag_values(flags, LOCK_KEYS)})
    parser = build_parser()
    check_keys(values, parser, config_path)
    parser.set_defaults(**{key: _expand_env(value, key) for key, value in values.items()})
    flags, unset = take_unset_flags(flags, parser)
    parser.set_defaults(**dict.fromkeys(unset))
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=flags)
    except UsageError:
        raise
    except ValueError as err:  # TrainingArguments' own consistency checks
        raise UsageError(" ".join(str(err).split())) from err
    from mixcse_hf.training.training_args import check_run_arguments

    check_run_arguments(data_args, training_args)
    return model_args, data_args, training_args


def resolved_config(
    model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments
) -> dict[str, Any]:
    """Every argument's final value, as a config that :func:`parse_run_args` reads back to the same run."""
    values = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args), **training_args.to_dict()}
    # Tokens are never written (to_dict only masks them); a "$" is written "$$", which reads back as "$".
    return {
        key: value.replace("$", "$$") if isinstance(value, str) else value
        for key, value in values.items()
        if key in _init_fields() and not key.endswith("token")
    }


def _init_fields() -> set[str]:
    from mixcse_hf.training.training_args import MixCSETrainingArguments

    return {
        f.name
        for cls in (ModelArguments, DataArguments, MixCSETrainingArguments)
        for f in dataclasses.fields(cls)
        if f.init
    }
