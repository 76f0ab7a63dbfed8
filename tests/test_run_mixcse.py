"""End to end: run_mixcse.py on a tiny BERT, and its handling of bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel

from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training import job as train_module
from run_mixcse import main
from tests.conftest import REPO_ROOT, SENTENCES, triplet_rows


def _config(tmp_path: Path, tiny_model_dir: str, corpus: Path, senteval: Path, out: Path, **extra: object) -> str:
    values = {
        "model_name_or_path": tiny_model_dir,
        "train_file": str(corpus),
        "senteval_dir": str(senteval),
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 16,
        "max_seq_length": 16,
        "max_steps": 4,
        "logging_steps": 2,
        "do_train": True,
        "do_eval": True,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "steps",
        "save_steps": 2,
        "metric_for_best_model": "stsb_spearman",
        "load_best_model_at_end": True,
        "report_to": "none",
        "pooler_type": "cls",
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.smoke
def test_tiny_run_writes_loadable_checkpoint(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out)
    assert main([config, "--mix_lambda", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "pooler cls:" in printed
    assert "pooler cls_before_pooler:" in printed
    assert f"checkpoint: {out}" in printed

    trained = AutoModel.from_pretrained(out)  # plain transformers, no remote code
    start = AutoModel.from_pretrained(tiny_model_dir)
    assert not torch.equal(trained.pooler.dense.weight, start.pooler.dense.weight)
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained.state_dict()[query], start.state_dict()[query])
    assert trained.config.mixcse_pooler_type == "cls"
    assert SentenceEncoder.from_pretrained(str(out)).encode(["a test ."]).shape == (1, 32)

    resolved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert resolved["mix_lambda"] == 0.2
    assert resolved["max_steps"] == 4
    results = json.loads((out / "sts_results.json").read_text())
    assert set(results["stsb_spearman"]["cls"]) == {"start", "trained"}
    assert set(results["stsb_spearman"]["cls"]["trained"]) == {"dev", "test"}
    assert (out / "checkpoint-4" / "model.safetensors").is_file()
    assert (out / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    card = (out / "README.md").read_text()
    assert "MixCSE, unsupervised (two dropout views" in card and "hard_negative_weight" not in card


@pytest.mark.parametrize("case", ["triplets", "pairs", "triplets, LoRA, bf16"])
def test_supervised_run_on_a_table(
    case: str,
    tmp_path: Path,
    tiny_model_dir: str,
    tiny_triplets: Path,
    tiny_senteval: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """SimCSE's NLI CSV (triplets, with mixed hard negatives; also with LoRA and bf16) and a sentence-transformers
    JSONL of pairs train through run_mixcse.py: the loss sees the hard negatives only from triplets, the card says
    which, the summary's speed counts rows and their sentences, and the checkpoint loads with AutoModel,
    SentenceEncoder and sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    layout = case.split(",")[0]
    if layout == "triplets":
        train_file, flags = tiny_triplets, ["--mixed_hard_negative", "true", "--hard_negative_weight", "0.5"]
    else:
        train_file, flags = tmp_path / "pairs.jsonl", []
        rows = [{"anchor": row["sent0"], "positive": row["sent1"]} for row in triplet_rows()]
        train_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    if "LoRA" in case:
        flags += ["--use_lora", "true", "--merge_lora", "true", "--bf16", "true", "--use_cpu", "true"]
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, train_file, tiny_senteval, out, mix_lambda=0.3, logging_steps=1)
    assert main([config, *flags]) == 0
    speed = json.loads((out / "sts_results.json").read_text())["train"]["train_samples_per_second"]
    columns = 3 if layout == "triplets" else 2
    assert f"training: {speed:.1f} rows/s ({speed * columns:.1f} sentences/s), " in capsys.readouterr().out

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = {key for entry in history if "loss" in entry for key in entry}
    assert {"sim_positive", "sim_mixed_negative"} <= logged
    assert ("sim_hard_negative" in logged) == ("sim_mixed_hard_negative" in logged) == (layout == "triplets")
    trained, start = AutoModel.from_pretrained(out), AutoModel.from_pretrained(tiny_model_dir)
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained.state_dict()[query], start.state_dict()[query])
    card = (out / "README.md").read_text()
    assert f"supervised {layout}" in card
    assert ("mixed_hard_negative" in card) == (layout == "triplets")
    expected = SentenceEncoder.from_pretrained(str(out)).encode(["a test ."])
    actual = SentenceTransformer(str(out)).encode(["a test ."], convert_to_tensor=True)
    torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=0.0, atol=1e-5)


def test_final_evaluation_uses_the_saved_float32_model(
    tmp_path: Path,
    tiny_model_dir: str,
    tiny_corpus: Path,
    tiny_senteval: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After bf16 training the reported numbers come from the model as saved (float32), not from the forward
    that training wrapped in autocast."""
    captured = {}
    original = train_module.final_scores

    def capturing(trainer, sts, label):
        if label == "trained model":
            captured["embeddings"] = trainer.sentence_encoder().encode(SENTENCES)
        return original(trainer, sts, label)

    monkeypatch.setattr(train_module, "final_scores", capturing)
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out, bf16=True, pooler_type="avg")
    assert main([config]) == 0
    saved = SentenceEncoder.from_pretrained(str(out)).encode(SENTENCES)
    assert torch.allclose(captured["embeddings"], saved, atol=1e-6)


def test_non_empty_output_dir_is_never_overwritten(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.txt").write_text("precious", encoding="utf-8")
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out)
    assert main([config]) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert _snapshot(out) == {"results.txt": b"precious"}


BAD_INPUTS = {
    "missing train file": (["--train_file", "{tmp}/nope.txt"], "does not exist"),
    "empty train file": (["--train_file", "{tmp}/empty.txt"], "is empty"),
    "blank-only train file": (["--train_file", "{tmp}/blank.txt"], "only blank lines"),
    "non-UTF-8 train file": (["--train_file", "{tmp}/latin1.txt"], "not valid UTF-8"),
    "lambda above 1": (["--mix_lambda", "1.2"], "mix_lambda"),
    "temp zero": (["--temp", "0"], "temp must be a finite number > 0"),
    "temp infinite": (["--temp", "inf"], "temp must be a finite number > 0"),
    "batch of one": (["--per_device_train_batch_size", "1"], "per_device_train_batch_size"),
    "max_seq_length 1": (["--max_seq_length", "1"], "max_seq_length"),
    "max_seq_length beyond the positions": (["--max_seq_length", "256"], "exceeds the 128 token positions"),
    "missing model": (["--model_name_or_path", "{tmp}/no-model"], "cannot load model_name_or_path"),
    "model without tokenizer files": (["--model_name_or_path", "{no_tokenizer}"], "holds no tokenizer files"),
    "malformed STS line": (["--senteval_dir", "{tmp}/bad_senteval"], "sts-dev.csv:1: malformed line"),
    "output_dir is a file": (["--output_dir", "{tmp}/a_file"], "is a file"),
    "unknown pooler_type": (["--pooler_type", "max"], "pooler_type must be one of"),
    "unknown mixed_negatives": (["--mixed_negatives", "all"], "mixed_negatives must be one of"),
    "non-numeric temp": (["--temp", "warm"], "invalid float value: 'warm'"),
    "unknown flag": (["--mix_lamda", "0.2"], "not used by the HfArgumentParser: ['--mix_lamda'"),
    "incomplete resume checkpoint": (["--resume_from_checkpoint", "{tmp}/out"], "is incomplete"),
    "inconsistent Trainer arguments": (["--save_strategy", "no"], "load_best_model_at_end"),
    "train file is a directory": (["--train_file", "{tmp}/out"], "is not a file"),
    "corpus smaller than one batch": (["--train_file", "{tmp}/three.txt"], "fewer than one batch of 4"),
    "only control characters": (["--train_file", "{tmp}/nul.txt"], "only blank lines"),
    "NaN gold score": (["--senteval_dir", "{tmp}/nan_senteval"], "sts-dev.csv:2: malformed line"),
    "empty STS file": (["--senteval_dir", "{tmp}/empty_senteval"], "holds no sentence pairs"),
    "fp16 on a CPU": (["--fp16", "true"], "fp16 mixed precision needs a GPU"),
    "learning rate nan": (["--learning_rate", "nan"], "learning_rate must be a positive number"),
    "nothing asked for": (
        ["--do_train", "false", "--do_eval", "false", "--eval_strategy", "no", "--load_best_model_at_end", "false"],
        "nothing to do",
    ),
    "output_dir not writable": (["--output_dir", "/proc/mixcse-test/out"], "is not writable"),
    "unknown changeable setting": (["--resume_changed_settings", "seed"], "'seed' cannot change on resume"),
    "table with unknown columns": (["--train_file", "{tmp}/qa.csv"], "cannot tell the training columns from"),
    "missing text column": (["--train_file", "{tmp}/qa.csv", "--text_columns", "q", "a2"], "has no column 'a2'"),
    "hard negative weight on sentences": (["--hard_negative_weight", "1.0"], "hard_negative_weight needs triplets"),
    "mixed hard negative on pairs": (
        ["--train_file", "{tmp}/qa.csv", "--text_columns", "q", "a", "--mixed_hard_negative", "true"],
        "mixed_hard_negative needs triplets",
    ),
    "mixed hard negative without lambda": (
        ["--mixed_hard_negative", "true", "--mix_lambda", "0"],
        "mixed_hard_negative mixes with weight mix_lambda",
    ),
    "mixing nothing": (["--mixed_negatives", "none"], "mixes nothing"),
    "a file format as dataset_name": (
        ["--train_file", "null", "--dataset_name", "text"],
        "dataset_name 'text' is a file format, not a dataset: pass the file as --train_file",
    ),
}
BAD_CONFIG_FILES = {
    "invalid YAML": (b"temp: [0.1\n", "is not valid YAML/JSON (line 2)"),
    "non-UTF-8 config": (b"temp: 0.1 # caf\xe9\n", "is not valid YAML/JSON"),
    "unknown key": (b"mix_lamda: 0.2\n", "unknown key 'mix_lamda'"),
    "not a mapping": (b"- temp\n", "must be a mapping"),
    "unset environment variable": (b"train_file: ${NOT_SET_ANYWHERE}/x.txt\n", "NOT_SET_ANYWHERE"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error_and_touches_nothing(
    case: str,
    tmp_path: Path,
    tiny_model_dir: str,
    tiny_corpus: Path,
    tiny_senteval: Path,
    broken_models: dict[str, str],
    capsys: pytest.CaptureFixture,
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("\n \n\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "a_file").write_text("keep", encoding="utf-8")
    bad_stsb = tmp_path / "bad_senteval" / "STS" / "STSBenchmark"
    bad_stsb.mkdir(parents=True)
    (bad_stsb / "sts-dev.csv").write_text("g\tf\ty\t1\tfour\ta\tb\n", encoding="utf-8")
    (bad_stsb / "sts-test.csv").write_text("g\tf\ty\t1\t4.0\ta\tb\n", encoding="utf-8")
    (tmp_path / "three.txt").write_text("\n".join(SENTENCES[:3]) + "\n", encoding="utf-8")
    (tmp_path / "nul.txt").write_text("\x00\x00\n\x01\u200b\n\x00\n", encoding="utf-8")
    (tmp_path / "qa.csv").write_text("q,a\n" + "".join(f"{s},{s}\n" for s in SENTENCES), encoding="utf-8")
    for name, dev in (("nan_senteval", "g\tf\ty\t1\t4.0\ta\tb\ng\tf\ty\t2\tnan\tc\td\n"), ("empty_senteval", "")):
        stsb = tmp_path / name / "STS" / "STSBenchmark"
        stsb.mkdir(parents=True)
        (stsb / "sts-dev.csv").write_text(dev, encoding="utf-8")
        (stsb / "sts-test.csv").write_text("g\tf\ty\t1\t4.0\ta\tb\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    before = _snapshot(tmp_path)

    flags, message = BAD_INPUTS[case]
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out)
    status = main(
        [
            config,
            "--overwrite_output_dir",
            "true",
            *[f.format(tmp=tmp_path, no_tokenizer=broken_models["no tokenizer files"]) for f in flags],
        ]
    )

    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("error: ")
    assert message in err[-1]
    assert "Traceback" not in "\n".join(err)
    after = {k: v for k, v in _snapshot(tmp_path).items() if k != "config.yaml"}
    assert after == {k: v for k, v in before.items() if k != "config.yaml"}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_FILES))
def test_bad_config_file_is_one_line_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content, message = BAD_CONFIG_FILES[case]
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    out = tmp_path / "out"
    assert main([str(config), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]
    assert not out.exists()


def test_a_run_without_a_config_or_senteval_dir_offline_is_told_both_fixes(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    """Evaluation is on by default, so STS-B comes from the Hub, which the tests cannot reach: one line naming
    senteval_dir and do_eval, before anything is written."""
    out = tmp_path / "out"
    flags = ["--model_name_or_path", tiny_model_dir, "--train_file", str(tiny_corpus), "--output_dir", str(out)]
    assert main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read the Hub copy mteb/stsbenchmark-sts" in err[0]
    assert err[0].endswith(
        "pass --senteval_dir with a SentEval-layout directory, or --do_eval false to train without evaluation"
    )
    assert not out.exists()


def test_cli_exit_status_and_single_line_message(tmp_path: Path) -> None:
    """As a real process: unknown config key -> exit 2 and exactly one line on stderr."""
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\ntrain_file: t.txt\npooler: cls\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_mixcse.py"), str(config)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: unknown key 'pooler' in {config}; did you mean 'pooler_type'?"]


def test_accelerate_launch_with_the_shipped_default_is_quiet(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path
) -> None:
    """configs/accelerate/default.yaml: no "values were not passed" warning, one process, the run's bf16 applies."""
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out, max_steps=2, bf16=True)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command = [*launcher, str(REPO_ROOT / "configs/accelerate/default.yaml"), str(REPO_ROOT / "run_mixcse.py")]
    proc = subprocess.run([*command, config], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "were not passed" not in proc.stderr
    assert "Device cpu, 1 process(es)" in proc.stderr
    assert yaml.safe_load((out / "run_config.yaml").read_text())["bf16"] is True
    assert (out / "model.safetensors").is_file()
