"""mixcse-export on a trained folder, the --backend flag of mixcse-encode, mixcse-eval and mixcse-mine against torch,
and mixcse-push --export (offline: HfApi is replaced by a recorder)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from mixcse_hf.cli import encode, evaluate, export, mine
from mixcse_hf.cli import push as push_cli
from mixcse_hf.hub import push
from mixcse_hf.models.exports import INT8_FILE
from tests.conftest import SENTENCES, train_tiny
from tests.hub.test_push import RecordingHubApi

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason='needs the onnx extra: pip install "mixcse_hf[onnx]"'
)
INT8 = ["--backend", "onnx", "--file_name", INT8_FILE]


@pytest.fixture(scope="module")
def trained(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run's output folder (cls pooler with its MLP, its card data), not yet exported."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 2) + "\n", encoding="utf-8")
    return train_tiny(tiny_model_dir, corpus, root / "out", "--pooler_type", "cls")


@pytest.fixture
def exported(trained: Path, tmp_path: Path, tiny_senteval: Path, capsys) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert export.main([str(folder), "--int8", "--senteval_dir", str(tiny_senteval)]) == 0
    assert "STS-B test" in capsys.readouterr().out
    return folder


def test_export_records_quality_and_the_card_lists_the_files(exported: Path) -> None:
    record = json.loads((exported / "onnx" / "mixcse_export.json").read_text(encoding="utf-8"))
    assert set(record) == {"model.onnx", INT8_FILE}
    assert all(-100 <= entry["stsb_test_spearman"] <= 100 for entry in record.values())
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert f"| `onnx/{INT8_FILE}` | ONNX, int8" in card
    assert 'backend="onnx")\n' in card  # the one-line load of onnx/model.onnx
    assert f'model_kwargs={{"file_name": "onnx/{INT8_FILE}"}}' in card


def test_encode_with_each_backend_equals_torch(exported: Path, tmp_path: Path) -> None:
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    outputs = {}
    for name, flags in {"torch": [], "onnx": ["--backend", "onnx"], "int8": INT8}.items():
        outputs[name] = tmp_path / f"{name}.npy"
        assert encode.main([str(exported), str(sentences), str(outputs[name]), "--normalize", *flags]) == 0
    reference = np.load(outputs["torch"])
    assert np.abs(np.load(outputs["onnx"]) - reference).max() <= 1e-4
    assert (np.load(outputs["int8"]) * reference).sum(1).min() >= 0.99


def test_eval_with_a_backend_scores_as_torch(exported: Path, tiny_senteval: Path, tmp_path: Path) -> None:
    reports = {}
    for name, flags in {"torch": [], "onnx": ["--backend", "onnx"]}.items():
        output = tmp_path / f"{name}.json"
        args = ["--model_name_or_path", str(exported), "--senteval_dir", str(tiny_senteval), "--output_json"]
        assert evaluate.main([*args, str(output), *flags]) == 0
        reports[name] = json.loads(output.read_text(encoding="utf-8"))
    assert reports["onnx"]["backend"] == "onnx"
    assert reports["onnx"]["average"] == pytest.approx(reports["torch"]["average"], abs=0.01)


def test_mine_with_a_backend_scores_as_torch(exported: Path, tmp_path: Path) -> None:
    """The same rows with the same negative scores (near-tied candidates of the tiny model may swap places)."""
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive"])
        writer.writerows(zip(SENTENCES[:6], SENTENCES[6:], strict=True))
    rows = {}
    for name, flags in {"torch": [], "onnx": ["--backend", "onnx"]}.items():
        output = tmp_path / f"{name}.jsonl"
        assert mine.main([str(exported), str(pairs), str(output), "--num_negatives", "2", "--scores", *flags]) == 0
        rows[name] = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows["onnx"]) == len(rows["torch"]) == 12
    for served, reference in zip(rows["onnx"], rows["torch"], strict=True):
        assert (served["anchor"], served["positive"]) == (reference["anchor"], reference["positive"])
        assert served["negative_score"] == pytest.approx(reference["negative_score"], abs=1e-4)


def retrain(folder: Path) -> None:
    """Change the weights as more training would."""
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def test_a_stale_file_is_refused_in_one_line_before_anything_is_written(exported: Path, tmp_path: Path, capsys) -> None:
    retrain(exported)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a sentence\n", encoding="utf-8")
    output = tmp_path / "out.npy"
    assert encode.main([str(exported), str(sentences), str(output), *INT8]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        f"is stale: it was exported from other weights than model.safetensors holds now (trained on "
        f"since); export it again: mixcse-export {exported} --int8"
    )
    assert not output.exists()


def test_push_export_uploads_fresh_files_and_a_stale_one_stops_the_push(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    api = RecordingHubApi(tmp_path / "hub")
    monkeypatch.setattr(push, "HfApi", lambda: api)
    assert push_cli.main([str(folder), "someone/tiny", "--export"]) == 0
    (uploaded,) = api.uploads
    assert {"model.onnx", INT8_FILE, "mixcse_export.json"} <= {p.name for p in (uploaded / "onnx").iterdir()}
    card = (uploaded / "README.md").read_text(encoding="utf-8")
    assert 'SentenceTransformer("someone/tiny", backend="onnx")' in card
    retrain(folder)
    capsys.readouterr()
    assert push_cli.main([str(folder), "someone/tiny"]) == 2
    assert "stale" in capsys.readouterr().err
    assert len(api.uploads) == 1
