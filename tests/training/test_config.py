"""Config files: YAML/JSON values as defaults, CLI overrides, unknown keys, env vars, the resolved config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from mixcse_hf.errors import UsageError
from mixcse_hf.training.config import parse_run_args, read_config_file, resolved_config
from mixcse_hf.training.run_dir import RESOLVED_CONFIG_FILE, write_resolved_config
from tests.conftest import REPO_ROOT, TRAINER_DEFAULTS, quickstart_training_settings


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


BASE = "model_name_or_path: some/model\ntrain_file: corpus.txt\noutput_dir: {out}\nreport_to: none\n"


def test_yaml_values_with_cli_override(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path / "o") + "temp: 0.1\nmix_lambda: 0.3\n")
    model_args, data_args, training_args = parse_run_args([config, "--mix_lambda", "0.4", "--max_seq_length", "16"])
    assert model_args.model_name_or_path == "some/model"
    assert data_args.train_file == "corpus.txt"
    assert data_args.max_seq_length == 16
    assert training_args.temp == 0.1
    assert training_args.mix_lambda == 0.4


def test_json_config(tmp_path: Path) -> None:
    values = {"model_name_or_path": "m", "train_file": "t.txt", "output_dir": str(tmp_path), "pooler_type": "avg"}
    config = _write(tmp_path / "c.json", json.dumps(values))
    assert parse_run_args([config])[2].pooler_type == "avg"


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path) + "mix_lamda: 0.2\n")
    with pytest.raises(UsageError, match=r"unknown key 'mix_lamda'.*did you mean 'mix_lambda'"):
        parse_run_args([config])


@pytest.mark.parametrize("text", ["temp: [0.1\n", "- just\n- a list\n"])
def test_invalid_yaml_or_shape(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match="config file"):
        read_config_file(_write(tmp_path / "bad.yaml", text))


def test_env_vars_expand_and_unset_ones_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path).replace("corpus.txt", "${DATA}/wiki.txt"))
    monkeypatch.setenv("DATA", "/data/dir")
    assert parse_run_args([config])[1].train_file == "/data/dir/wiki.txt"
    monkeypatch.delenv("DATA")
    with pytest.raises(UsageError, match=r"\$\{DATA\}, which is not set"):
        parse_run_args([config])


def test_only_braced_variables_expand_and_a_double_dollar_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$word`` is text (``run_name: budget$v2`` was read as the variable ``v2``); ``$$`` is a literal ``$``; the
    resolved config writes ``$`` as ``$$``, so it reads back to the same values."""
    monkeypatch.setenv("DATA", "/data/dir")
    monkeypatch.delenv("v2", raising=False)
    text = BASE.format(out=tmp_path / "o").replace("corpus.txt", "${DATA}/wiki.txt")
    config = _write(tmp_path / "c.yaml", text + "run_name: budget$v2 costs $$5, not $${DATA}\n")
    args = parse_run_args([config])
    assert args[1].train_file == "/data/dir/wiki.txt"
    assert args[2].run_name == "budget$v2 costs $5, not ${DATA}"
    write_resolved_config(str(tmp_path), resolved_config(*args))
    assert parse_run_args([str(tmp_path / RESOLVED_CONFIG_FILE)])[2].run_name == args[2].run_name


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--mix_lambda", "1.5", "mix_lambda must be in \\(0, 1\\)"),
        ("--mix_lambda", "-0.2", "mix_lambda must be in \\(0, 1\\)"),
        ("--temp", "0", "temp must be a finite number > 0"),
        ("--temp", "inf", "temp must be a finite number > 0"),
        ("--temp", "nan", "temp must be a finite number > 0"),
        ("--per_device_train_batch_size", "1", "per_device_train_batch_size must be >= 2"),
        ("--max_seq_length", "1", "max_seq_length must be >= 2"),
    ],
)
def test_invalid_values_are_usage_errors(tmp_path: Path, flag: str, value: str, message: str) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path))
    with pytest.raises(UsageError, match=message):
        parse_run_args([config, flag, value])


def test_simcse_mode_with_zero_lambda(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path) + "mix_lambda: 0\n")
    assert not parse_run_args([config])[2].mix_lambda


def test_missing_model_is_usage_error(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", f"train_file: t.txt\noutput_dir: {tmp_path}\n")
    with pytest.raises(UsageError, match="model_name_or_path is required"):
        parse_run_args([config])


def test_resolved_config_reads_back_to_the_same_run(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path / "o") + "eval_strategy: steps\neval_steps: 7\n")
    args = parse_run_args([config, "--temp", "0.07", "--mixed_negatives", "paired"])
    write_resolved_config(str(tmp_path), resolved_config(*args))
    again = parse_run_args([str(tmp_path / RESOLVED_CONFIG_FILE)])
    assert again[0] == args[0]
    assert again[1] == args[1]
    assert again[2].to_dict() == args[2].to_dict()


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_parse(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every config parses, on any machine: each leaves the precision to the hardware (``precision: auto``)."""
    monkeypatch.setenv("MIXCSE_DATA_DIR", "/data")
    assert yaml.safe_load(config.read_text())["precision"] == "auto"
    model_args, data_args, training_args = parse_run_args([str(config)])
    assert model_args.model_name_or_path
    assert data_args.dataset_name or data_args.train_file.startswith(("/data/wiki/", "/data/nli/", "outputs/data/"))
    assert training_args.metric_for_best_model == "stsb_spearman"


@pytest.mark.parametrize("spelling", [["--train_file", "null"], ["--train_file=null"]])
def test_null_unsets_a_config_key(tmp_path: Path, spelling: list[str]) -> None:
    """Switching a config from train_file to dataset_name on the command line, without editing the YAML."""
    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path / "o"))
    _, data_args, _ = parse_run_args([config, *spelling, "--dataset_name", "some/dataset"])
    assert data_args.train_file is None and data_args.dataset_name == "some/dataset"
    _, data_args, training_args = parse_run_args([config, "--max_train_samples", "null", "--mix_lambda", "null"])
    assert data_args.max_train_samples is None and training_args.mix_lambda is None
    # "none" stays a value where options have one
    flags = ["--report_to", "none", "--mixed_negatives", "none", "--mix_lambda", "0"]
    _, _, training_args = parse_run_args([config, *flags])
    assert training_args.report_to == [] and training_args.mixed_negatives == "none"
    with pytest.raises(UsageError, match="--temp cannot be unset"):
        parse_run_args([config, "--temp", "null"])


def test_a_missing_reporting_package_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import integrations

    config = _write(tmp_path / "c.yaml", BASE.format(out=tmp_path / "o"))
    monkeypatch.setattr(integrations, "is_tensorboard_available", lambda: False)
    with pytest.raises(UsageError, match=r"needs the tensorboard package.*pip install tensorboard") as info:
        parse_run_args([config, "--report_to", "tensorboard"])
    assert "\n" not in str(info.value)
    monkeypatch.setattr(integrations, "is_tensorboard_available", lambda: True)
    assert parse_run_args([config, "--report_to", "tensorboard"])[2].report_to == ["tensorboard"]


def test_a_run_without_a_config_takes_the_quick_starts_training_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not the Trainer's batch of 8 without evaluation: the quick start's settings, which flags override."""
    flags = ["--model_name_or_path", "some/model", "--train_file", "corpus.txt", "--output_dir", str(tmp_path / "o")]
    with caplog.at_level(logging.INFO, logger="mixcse_hf.training.config"):
        config_less = resolved_config(*parse_run_args([*flags, "--seed", "7"]))
    assert "No config given: the shipped quickstart config's training settings" in caplog.text
    settings = quickstart_training_settings()
    assert config_less["per_device_train_batch_size"] == settings["per_device_train_batch_size"]
    assert config_less["learning_rate"] == settings["learning_rate"]
    assert config_less["do_eval"] and config_less["eval_strategy"] == "steps" and config_less["seed"] == 7
    config = _write(tmp_path / "c.yaml", yaml.safe_dump({**settings, "seed": 7}))
    assert resolved_config(*parse_run_args([config, *flags])) == config_less


def test_the_early_checks_see_the_defaults_of_a_run_without_a_config(tmp_path: Path) -> None:
    flags = ["--model_name_or_path", "m", "--train_file", "t.txt", "--output_dir", str(tmp_path), "--save_steps"]
    eval_steps = quickstart_training_settings()["eval_steps"]
    with pytest.raises(UsageError, match=f"save_steps {eval_steps + 1} must be a multiple of eval_steps {eval_steps}"):
        parse_run_args([*flags, str(eval_steps + 1)])


def test_trainer_defaults_undo_the_quick_starts_settings(tmp_path: Path) -> None:
    """tests.conftest.TRAINER_DEFAULTS (the tiny runs') gives a run without a config what an empty config gives."""
    flags = ["--model_name_or_path", "m", "--train_file", "t.txt", "--output_dir", str(tmp_path), "--report_to", "none"]
    empty = _write(tmp_path / "empty.yaml", "")
    assert resolved_config(*parse_run_args([*flags, *TRAINER_DEFAULTS])) == resolved_config(
        *parse_run_args([empty, *flags])
    )
