"""The start model's STS-B scores: measured once per (weights, data), kept in the run record for resumes, and
optional."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from mixcse_hf.evaluation.score_cache import fingerprint
from mixcse_hf.training.run_dir import RUN_FILE
from run_mixcse import main
from tests.test_run_mixcse import _config

MEASURED = "Scoring the start model on STS-B"
CACHED = "Start model: STS-B scores from the cache"


def _start_rows(out: Path) -> dict:
    results = json.loads((out / "sts_results.json").read_text())
    return {pooler: models["start"] for pooler, models in results["stsb_spearman"].items() if "start" in models}


def test_fingerprint_follows_weights_tokenizer_and_data(tiny: tuple) -> None:
    model, tokenizer = tiny
    key = fingerprint(model, tokenizer, ["cls"], {"dev": [["a"], ["b"], [1.0]]})
    assert key == fingerprint(model, tokenizer, ["cls"], {"dev": [["a"], ["b"], [1.0]]})
    assert key != fingerprint(model, tokenizer, ["cls"], {"dev": [["a"], ["b"], [2.0]]})
    assert key != fingerprint(model, tokenizer, ["avg"], {"dev": [["a"], ["b"], [1.0]]})
    tokenizer(["a b c"], truncation=True, max_length=2, padding="max_length")  # a call's settings are not the model
    assert key == fingerprint(model, tokenizer, ["cls"], {"dev": [["a"], ["b"], [1.0]]})
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0, 0] += 1e-6
    assert key != fingerprint(model, tokenizer, ["cls"], {"dev": [["a"], ["b"], [1.0]]})


def test_second_run_reads_the_cache_and_records_the_start(
    tmp_path: Path,
    tiny_model_dir: str,
    tiny_corpus: Path,
    tiny_senteval: Path,
    caplog: pytest.LogCaptureFixture,
    score_cache: Path,
) -> None:
    # avg reads no MLP: both runs start from the same weights whatever their seeds.
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path / "first", pooler_type="avg")
    with caplog.at_level(logging.INFO):
        assert main([config, "--max_steps", "2"]) == 0
    assert MEASURED in caplog.text and CACHED not in caplog.text
    first = _start_rows(tmp_path / "first")
    assert set(first["avg"]) == {"dev", "test"}
    assert len(list(score_cache.glob("*.json"))) == 1
    recorded = json.loads((tmp_path / "first" / RUN_FILE).read_text())
    assert recorded["start_scores"] == first

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([config, "--max_steps", "2", "--output_dir", str(tmp_path / "second"), "--seed", "7"]) == 0
    assert CACHED in caplog.text and MEASURED not in caplog.text
    assert _start_rows(tmp_path / "second") == first


def test_resumed_run_reuses_the_recorded_start(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out, load_best_model_at_end=False)
    assert main([config, "--max_steps", "2"]) == 0
    first = _start_rows(out)
    # cls re-initialises the MLP at the start: re-measuring on resume would score other weights.
    recorded = json.loads((out / RUN_FILE).read_text())
    recorded["start_scores"]["cls"]["dev"] = 12.34  # proves the resumed run reads the run record
    (out / RUN_FILE).write_text(json.dumps(recorded))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([config, "--max_steps", "4", "--resume_changed_settings", "max_steps"]) == 0
    assert MEASURED not in caplog.text and CACHED not in caplog.text
    resumed = _start_rows(out)
    assert resumed["cls"]["dev"] == 12.34
    assert resumed["cls"]["test"] == first["cls"]["test"]


def test_start_evaluation_off(
    tmp_path: Path, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, tiny_senteval, out, start_evaluation=False)
    with caplog.at_level(logging.INFO):
        assert main([config, "--max_steps", "2"]) == 0
    assert MEASURED not in caplog.text
    assert _start_rows(out) == {}
    assert json.loads((out / RUN_FILE).read_text())["start_scores"] == {}
    assert set(json.loads((out / "sts_results.json").read_text())["stsb_spearman"]["cls"]) == {"trained"}
