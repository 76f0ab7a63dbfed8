"""Streaming data: sharding across processes and workers (no row twice in an epoch, none left out), the batches of
one process holding the global batch, exact resume after SIGKILL, equality with map-style tokenisation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from accelerate.data_loader import IterableDatasetShard
from transformers import AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.training.data import load_corpus, tokenize_training_data, training_collator
from mixcse_hf.training.streaming import StreamingCorpus, TokenizingCollator, row_source
from run_mixcse import main
from tests.conftest import (
    SENTENCES,
    kill_after_checkpoint,
    logged_losses,
    max_weight_difference,
    resume_config,
    triplet_rows,
)

ROWS = 50


@pytest.fixture
def numbered_corpus(tmp_path: Path) -> Path:
    """``ROWS`` distinct sentences, with blank lines between some of them."""
    path = tmp_path / "numbered.txt"
    lines = []
    for index in range(ROWS):
        lines.append(f"sentence number {index} .")
        if index % 7 == 3:
            lines.append("  ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _corpus(path: Path, global_batch: int, buffer: int = 16, seed: int = 0, **kwargs) -> StreamingCorpus:
    return StreamingCorpus(row_source(str(path), None), global_batch, buffer, seed, **kwargs)


def _process_batches(corpus: StreamingCorpus, batch: int, processes: int, rank: int, workers: int, count: int):
    """The first ``count`` batches process ``rank`` gets: accelerate's shard inside a DataLoader, as prepared."""
    shard = IterableDatasetShard(corpus, batch_size=batch, drop_last=True, num_processes=processes, process_index=rank)
    loader = torch.utils.data.DataLoader(shard, batch_size=batch, num_workers=workers, collate_fn=list)
    return [[row["text"] for row in rows] for rows in itertools.islice(loader, count)]


def _global_batches(corpus: StreamingCorpus, batch: int, processes: int, workers: int, count: int) -> list[list[str]]:
    per_process = [_process_batches(corpus, batch, processes, rank, workers, count) for rank in range(processes)]
    return [list(itertools.chain.from_iterable(step)) for step in zip(*per_process, strict=True)]


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 0), (2, 2), (3, 1)])
def test_every_layout_sees_the_batches_of_one_process(numbered_corpus: Path, processes: int, workers: int) -> None:
    """Process p's rows of each step, in rank order, are the global batch of 1 process, 0 workers; each epoch of the
    stream is the corpus, each row once, less the fewer than one batch of rows that fill no batch, in another order
    each epoch."""
    batch = 4
    global_batch = batch * processes
    steps = 2 * ROWS // global_batch + 1  # more than two epochs of the 50 rows
    expected = _global_batches(_corpus(numbered_corpus, global_batch), global_batch, 1, 0, steps)
    got = _global_batches(_corpus(numbered_corpus, global_batch), batch, processes, workers, steps)
    assert got == expected

    stream = list(itertools.chain.from_iterable(got))
    corpus = [f"sentence number {index} ." for index in range(ROWS)]
    per_epoch = ROWS // global_batch * global_batch
    first, second = stream[:per_epoch], stream[per_epoch : 2 * per_epoch]
    for epoch in (first, second):
        assert len(set(epoch)) == len(epoch) and set(epoch) <= set(corpus)
    assert first != corpus[:per_epoch] and second != first  # shuffled, and differently per epoch


@pytest.mark.parametrize("rows", [50, 51, 53])
def test_no_batch_holds_a_row_twice_across_epochs(tmp_path: Path, rows: int) -> None:
    """Batches never span two epochs: over 400 global batches (about 60 epochs), none holds a row twice, whatever
    the corpus size left over at each epoch's end."""
    path = tmp_path / "rows.txt"
    path.write_text("".join(f"row {index}\n" for index in range(rows)), encoding="utf-8")
    batches = list(itertools.islice(_corpus(path, 8).global_batches(), 400))
    assert [batch for batch in batches if len(set(batch)) < len(batch)] == []
    assert {len(batch) for batch in batches} == {8}


def test_shuffling_is_seeded(numbered_corpus: Path) -> None:
    def first_rows(**kwargs) -> list[str]:
        return [row["text"] for row in itertools.islice(iter(_corpus(numbered_corpus, 4, **kwargs)), ROWS)]

    assert first_rows(seed=1) == first_rows(seed=1)
    assert first_rows(seed=1) != first_rows(seed=2)
    in_order = [f"sentence number {index} ." for index in range(ROWS)]
    assert first_rows(buffer=0) == in_order[:48] + in_order[:2]  # 12 batches of 4 per epoch, then the corpus again
    # 10 rows make two batches of 4 per epoch; the next epoch starts the corpus again
    assert first_rows(buffer=0, max_rows=10)[8:16] == [f"sentence number {index} ." for index in range(8)]


@pytest.mark.parametrize("workers", [0, 2])
def test_start_batch_continues_the_uninterrupted_stream(numbered_corpus: Path, workers: int) -> None:
    corpus = _corpus(numbered_corpus, 8)
    uninterrupted = _global_batches(corpus, 4, 2, workers, 15)
    corpus.start_batch = 9
    assert _global_batches(corpus, 4, 2, workers, 6) == uninterrupted[9:]


def test_the_collator_batches_as_the_map_style_path(tiny_model_dir: str, numbered_corpus: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    collator = TokenizingCollator(tokenizer, max_seq_length=6)
    tokenized = tokenize_training_data(load_corpus(str(numbered_corpus)), tokenizer, 6)
    rows = [{"text": f"sentence number {index} ."} for index in range(5)]
    expected = training_collator(tokenized, tokenizer)([tokenized[index] for index in range(5)])
    got = collator(rows)
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key])

    table = tmp_path / "triplets.jsonl"
    table.write_text("".join(json.dumps(row) + "\n" for row in triplet_rows()), encoding="utf-8")
    supervised = tokenize_training_data(load_corpus(str(table)), tokenizer, 6)
    corpus = _corpus(table, 4, buffer=0)
    streamed = list(itertools.islice(iter(corpus), 4))
    assert corpus.column_names == ["anchor", "positive", "negative"]
    expected = training_collator(supervised, tokenizer)([supervised[index] for index in range(4)])
    got = collator(streamed)
    for column in expected:
        for key in expected[column]:
            assert torch.equal(got[column][key], expected[column][key]), (column, key)


def _config(tmp_path: Path, model_dir: str, corpus: Path, **extra: object) -> Path:
    streaming = {"streaming": True, "shuffle_buffer_size": 16, "max_steps": 20}
    return resume_config(tmp_path, model_dir, corpus, **{**streaming, **extra})


def test_sigkill_mid_stream_then_resume_matches_an_uninterrupted_run(
    tiny_model_dir: str, numbered_corpus: Path, tmp_path: Path
) -> None:
    """20 steps of 4 rows over 50 rows (the stream wraps into its second epoch); killed after checkpoint-9, in the
    first epoch's last rows, and resumed: the same losses and weights as a run that never stopped."""
    config = _config(tmp_path, tiny_model_dir, numbered_corpus, dataloader_num_workers=1)
    reference = tmp_path / "reference"
    assert main([str(config), "--output_dir", str(reference)]) == 0

    crashed = tmp_path / "crashed"
    kill_after_checkpoint(config, crashed, 9)
    assert main([str(config), "--output_dir", str(crashed)]) == 0

    expected, resumed = logged_losses(reference), logged_losses(crashed)
    assert max(resumed) == 20
    for step in range(10, 21):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), f"loss differs at step {step}"
    assert max_weight_difference(reference, crashed) <= 1e-5


def test_streaming_needs_max_steps(tiny_model_dir: str, numbered_corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model_dir, numbered_corpus, max_steps=-1)
    with pytest.raises(UsageError, match="--max_steps N"):
        main([str(config), "--output_dir", str(tmp_path / "out"), "--debug"])
    assert not (tmp_path / "out").exists()


def test_a_stream_shorter_than_a_batch_is_refused(tiny_model_dir: str, tmp_path: Path) -> None:
    corpus = tmp_path / "short.txt"
    corpus.write_text("\n".join(SENTENCES[:3]) + "\n\n \n", encoding="utf-8")
    with pytest.raises(UsageError, match="fewer usable rows than one batch of 4"):
        main([str(_config(tmp_path, tiny_model_dir, corpus)), "--output_dir", str(tmp_path / "out"), "--debug"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="3 usable row"):
        next(iter(_corpus(corpus, 4)))


def test_bad_input_is_refused_before_training(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 3)
    with pytest.raises(UsageError, match=r"not valid UTF-8 \(line 1"):
        row_source(str(latin1), None)
    late = tmp_path / "late.txt"
    late.write_bytes(b"fine line\n" * 200_000 + "caf\xe9\n".encode("latin-1"))
    source = row_source(str(late), None)  # past the checked start: refused as it is read
    with pytest.raises(UsageError, match=r"not valid UTF-8 \(line 200001:"):
        sum(1 for _ in source())
    with pytest.raises(UsageError, match="dataloader_num_workers"):
        main(["--model_name_or_path", "x", "--train_file", str(late), "--streaming", "true",
              "--preprocessing_num_workers", "2", "--debug"])  # fmt: skip


def test_a_missing_dataset_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot stream"):
        StreamingCorpus(row_source(None, str(tmp_path / "no-such-dataset")), 4, 0, 0)


def test_a_character_cut_by_the_checked_start_is_accepted(tmp_path: Path) -> None:
    """The up-front UTF-8 check reads the first MiB only: a two-byte character across that point is no error."""
    from mixcse_hf.training.streaming import UTF8_CHECKED_BYTES

    path = tmp_path / "cut.txt"
    path.write_bytes(b"a" * (UTF8_CHECKED_BYTES - 1) + "é\n".encode())
    assert sum(1 for _ in row_source(str(path), None)()) == 1


def test_a_stream_logs_no_epoch(tiny_model_dir: str, numbered_corpus: Path, tmp_path: Path) -> None:
    """The Trainer counts a stream's epoch as the share of max_steps done (1.0 after 5 steps of a 50-row corpus):
    a streamed run logs no epoch, and its card states none."""
    config = _config(tmp_path, tiny_model_dir, numbered_corpus, max_steps=5, save_strategy="no")
    out = tmp_path / "out"
    assert main([str(config), "--output_dir", str(out)]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4, 5]
    assert not [entry for entry in history if "epoch" in entry]
    assert "| `epochs` |" not in (out / "README.md").read_text()
