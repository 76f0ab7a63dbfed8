"""mixcse-encode: every input and output format against SentenceEncoder.encode, and every refusal before writing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

from mixcse_hf.cli.encode import main
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.data import load_table
from tests.conftest import BROKEN_MODELS, REPO_ROOT, SENTENCES, minilm_path

# 21 sentences of varied length (so that length sorting reorders them), one with a comma, quotes and non-ASCII.
TEXTS = [*SENTENCES, *(f"{a} {b}" for a, b in zip(SENTENCES, SENTENCES[4:], strict=False)), 'a "café", in paris .']
CHUNKED = ["--chunk_size", "4", "--batch_size", "3"]


@pytest.fixture(scope="module")
def expected(tiny_model_dir: str) -> torch.Tensor:
    """SentenceEncoder.encode of TEXTS in one call: what the command must reproduce."""
    return SentenceEncoder.from_pretrained(tiny_model_dir).encode(TEXTS)


@pytest.fixture
def txt_input(tmp_path: Path) -> Path:
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def read_embeddings(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """The embeddings an OUTPUT file holds, and its texts for .jsonl."""
    if path.suffix == ".npy":
        return np.load(path), None
    if path.suffix == ".safetensors":
        return load_file(path)["embeddings"], None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return np.array([row["embedding"] for row in rows], dtype=np.float32), [row["text"] for row in rows]


def assert_matches(embeddings: np.ndarray, expected: torch.Tensor) -> None:
    assert embeddings.dtype == np.float32
    assert embeddings.shape == tuple(expected.shape)
    np.testing.assert_allclose(embeddings, expected.numpy(), rtol=0, atol=1e-6)


@pytest.mark.smoke
@pytest.mark.parametrize("extension", [".npy", ".safetensors", ".jsonl"])
def test_each_output_format_equals_sentence_encoder_across_chunks(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, expected: torch.Tensor, extension: str
) -> None:
    output = out_dir / f"embeddings{extension}"
    assert main([tiny_model_dir, str(txt_input), str(output), *CHUNKED]) == 0
    embeddings, texts = read_embeddings(output)
    assert_matches(embeddings, expected)
    assert texts in (None, TEXTS)
    assert [p.name for p in out_dir.iterdir()] == [output.name]  # no temporary file left


def write_table(path: Path, rows: list[dict[str, str]]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return
    if path.suffix == ".tsv":  # unquoted, as training reads TSV
        lines = ["\t".join(rows[0]), *("\t".join(row.values()) for row in rows)]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".jsonl"])
def test_table_inputs_read_the_text_column(
    tiny_model_dir: str, tmp_path: Path, out_dir: Path, expected: torch.Tensor, extension: str
) -> None:
    table = tmp_path / f"table{extension}"
    write_table(table, [{"id": str(i), "sentence": text} for i, text in enumerate(TEXTS)])
    output = out_dir / "embeddings.jsonl"
    assert main([tiny_model_dir, str(table), str(output), "--text_column", "sentence", *CHUNKED]) == 0
    embeddings, texts = read_embeddings(output)
    assert texts == TEXTS
    assert_matches(embeddings, expected)


def test_tsv_fields_are_read_as_training_reads_them(tiny_model_dir: str, tmp_path: Path, out_dir: Path) -> None:
    """TSV is unquoted: a field that starts with a quote keeps it, in training and here alike."""
    table = tmp_path / "quotes.tsv"
    texts = ['"quoted" words .', 'a "b" c .', "plain ."]
    table.write_text("text\n" + "".join(f"{text}\n" for text in texts), encoding="utf-8")
    output = out_dir / "embeddings.jsonl"
    assert main([tiny_model_dir, str(table), str(output)]) == 0
    assert read_embeddings(output)[1] == texts == load_table(str(table))["text"]


def test_normalize_gives_unit_vectors_of_the_same_direction(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, expected: torch.Tensor
) -> None:
    output = out_dir / "embeddings.npy"
    assert main([tiny_model_dir, str(txt_input), str(output), "--normalize", *CHUNKED]) == 0
    embeddings = np.load(output)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    assert_matches(embeddings, torch.nn.functional.normalize(expected, dim=-1))


def test_padding_free_writes_the_same_embeddings(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, expected: torch.Tensor
) -> None:
    output = out_dir / "embeddings.npy"
    assert main([tiny_model_dir, str(txt_input), str(output), "--padding_free", *CHUNKED]) == 0
    np.testing.assert_allclose(np.load(output), expected.numpy(), rtol=0, atol=1e-5)


def test_bfloat16_compute_writes_float32_close_to_float32(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, expected: torch.Tensor
) -> None:
    output = out_dir / "embeddings.safetensors"
    assert main([tiny_model_dir, str(txt_input), str(output), "--dtype", "bfloat16"]) == 0
    embeddings = torch.from_numpy(read_embeddings(output)[0])
    assert embeddings.dtype == torch.float32
    assert not torch.equal(embeddings, expected)  # really computed in bfloat16
    assert torch.nn.functional.cosine_similarity(embeddings, expected).min() > 0.99


def test_stderr_is_one_summary_line_unless_progress_is_forced(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([tiny_model_dir, str(txt_input), str(out_dir / "a.npy")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"encoded {len(TEXTS)} sentences (d=32) in ")
    assert lines[0].endswith(f"-> {out_dir / 'a.npy'}")
    assert main([tiny_model_dir, str(txt_input), str(out_dir / "b.npy"), "--progress"]) == 0
    assert f"{len(TEXTS)}/{len(TEXTS)}" in capsys.readouterr().err


def test_overwrite_replaces_an_existing_output(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, expected: torch.Tensor
) -> None:
    output = out_dir / "embeddings.npy"
    np.save(output, np.zeros((2, 2), dtype=np.float32))
    assert main([tiny_model_dir, str(txt_input), str(output), "--overwrite"]) == 0
    assert_matches(np.load(output), expected)


@pytest.fixture(scope="module")
def model_without_pooler(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random DistilBERT: no pooler layer, so no MLP for pooler ``cls``."""
    path = tmp_path_factory.mktemp("tiny-distilbert")
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return str(path)


ERROR_CASES = {
    "missing model": ({"model": "no-such-model"}, [], "cannot load"),
    "missing input": ({"input": "missing.txt"}, [], "does not exist"),
    "input extension": ({"input": "sentences.md"}, [], "unsupported extension '.md'; use one of .txt, .csv"),
    "output extension": ({"output": "embeddings.csv"}, [], "use one of .npy, .safetensors, .jsonl"),
    "missing column": ({"input": "table.csv"}, [], "no column 'text' (columns: id, sentence); pass --text_column"),
    "missing key": ({"input": "table.jsonl"}, [], "line 1 has no key 'text' (keys: id, sentence)"),
    "blank line": ({"input": "blank.txt"}, [], "line 3 is blank"),
    "not utf-8": ({"input": "latin1.txt"}, [], "is not valid UTF-8 (line 1: invalid continuation byte)"),
    "not json": ({"input": "broken.jsonl"}, [], "line 2 is not JSON"),
    "csv quoting": ({"input": "broken.csv"}, [], "is not valid CSV (unexpected end of data)"),
    "column twice": ({"input": "twice.csv"}, [], "the header names the column 'text' twice (columns: text, text)"),
    "header only": ({"input": "header_only.csv"}, [], "has a header (id, text) but no rows"),
    "batch size": ({}, ["--batch_size", "0"], "--batch_size must be >= 1, got 0"),
    "device": ({}, ["--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    "mlp without pooler layer": ({"model": "distilbert"}, ["--pooler", "cls"], "DistilBertModel has none"),
    "existing output": ({"output": "existing.npy"}, [], "exists; pass --overwrite"),
    "unknown pooler": ({}, ["--pooler", "max"], "pooler_type must be one of"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_one_line_error_and_writes_nothing(
    case: str,
    tiny_model_dir: str,
    model_without_pooler: str,
    tmp_path: Path,
    txt_input: Path,
    out_dir: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    write_table(tmp_path / "table.csv", [{"id": "0", "sentence": TEXTS[0]}])
    write_table(tmp_path / "table.jsonl", [{"id": "0", "sentence": TEXTS[0]}])
    (tmp_path / "blank.txt").write_text("one .\ntwo .\n \nfour .\n", encoding="utf-8")
    (tmp_path / "sentences.md").write_text("one .\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_text("café .\n", encoding="latin-1")
    (tmp_path / "broken.jsonl").write_text('{"text": "one ."}\n{"text": \n', encoding="utf-8")
    (tmp_path / "broken.csv").write_text('text\n"one .\n', encoding="utf-8")
    (tmp_path / "twice.csv").write_text("text,text\none .,two .\n", encoding="utf-8")
    (tmp_path / "header_only.csv").write_text("id,text\n\n", encoding="utf-8")
    (out_dir / "existing.npy").write_bytes(b"keep")
    models = {"distilbert": model_without_pooler, "no-such-model": str(tmp_path / "no-such-model")}
    paths, flags, message = ERROR_CASES[case]
    model = models.get(paths.get("model"), tiny_model_dir)
    source = tmp_path / paths["input"] if "input" in paths else txt_input
    output = out_dir / paths.get("output", "embeddings.npy")
    assert main([model, str(source), str(output), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["existing.npy"]
    assert (out_dir / "existing.npy").read_bytes() == b"keep"


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_a_model_that_cannot_encode_is_one_line_error_and_writes_nothing(
    case: str, broken_models: dict[str, str], txt_input: Path, out_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A folder without its tokenizer files would encode every word as [UNK] with exit 0; an empty folder, an
    unknown model_type or corrupt weights would end in a traceback."""
    assert main([broken_models[case], str(txt_input), str(out_dir / "embeddings.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert BROKEN_MODELS[case] in err and repr(broken_models[case]) in err
    assert list(out_dir.iterdir()) == []


def test_argument_checks_come_before_torch_loads(tmp_path: Path, txt_input: Path, out_dir: Path) -> None:
    """An existing OUTPUT is refused in a process that never imports torch (benchmarks/cli_startup.py times it)."""
    (out_dir / "existing.npy").write_bytes(b"keep")
    code = (
        "import sys; from mixcse_hf.cli.encode import main; status = main(sys.argv[1:]); "
        "print(status, 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    command = [sys.executable, "-c", code, "some/model", str(txt_input), str(out_dir / "existing.npy")]
    process = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert process.stdout.split() == ["2", "False", "False"], process.stderr
    assert "exists; pass --overwrite" in process.stderr


def test_failure_while_encoding_leaves_no_partial_output_and_keeps_the_old_one(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = out_dir / "embeddings.npy"
    output.write_bytes(b"old")
    calls = []
    encode = SentenceEncoder.encode

    def fail_on_second_chunk(self: SentenceEncoder, sentences: list[str], **kwargs: object) -> torch.Tensor:
        calls.append(len(sentences))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return encode(self, sentences, **kwargs)

    monkeypatch.setattr(SentenceEncoder, "encode", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="out of memory"):
        main([tiny_model_dir, str(txt_input), str(output), "--overwrite", *CHUNKED])
    assert calls == [4, 4]
    assert [p.name for p in out_dir.iterdir()] == ["embeddings.npy"]
    assert output.read_bytes() == b"old"


def test_partial_outputs_of_killed_runs_are_removed_by_the_next_run(
    tiny_model_dir: str, txt_input: Path, out_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A killed run leaves its hidden partial OUTPUT behind: the next run for the same OUTPUT removes those of
    processes of this machine that are gone, and keeps a running one's, another machine's and other OUTPUTs'."""
    import socket

    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = out_dir / f".embeddings.npy.{host}.{finished.pid}.partial"
        kept = [
            out_dir / f".embeddings.npy.{host}.{running.pid}.partial",
            out_dir / f".embeddings.npy.other-host.{finished.pid}.partial",
            out_dir / f".other.npy.{host}.{finished.pid}.partial",
        ]
        for path in (stale, *kept):
            path.write_bytes(b"partial")
        assert main([tiny_model_dir, str(txt_input), str(out_dir / "embeddings.npy")]) == 0
    finally:
        running.kill()
        running.wait()
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(["embeddings.npy", *(p.name for p in kept)])
    assert f"removed {stale}" in capsys.readouterr().err


def test_help_shows_the_command_name(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: mixcse-encode")
