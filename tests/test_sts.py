"""STS-B loading (SentEval layout) and the Spearman x 100 score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.modeling import SentenceEncoder
from mixcse_hf.sts import StsPairs, load_stsb, read_stsb_file, sts_spearman
from tests.conftest import SENTENCES, minilm_path, write_stsb_split


def test_reads_fields_4_5_6_and_ignores_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "sts-dev.csv"
    path.write_text(
        "genre\tfile\tyear\t0001\t2.5\tfirst one .\tsecond one .\n"
        'genre\tfile\tyear\t0002\t4.0\ta "quoted" one\tother\textra\tfields\n',
        encoding="utf-8",
    )
    pairs = read_stsb_file(str(path))
    assert pairs.scores == [2.5, 4.0]
    assert pairs.sentences1 == ["first one .", 'a "quoted" one']
    assert pairs.sentences2 == ["second one .", "other"]


@pytest.mark.parametrize("bad_line", ["genre\tfile\tyear\t0002\tnot-a-number\ta\tb", "too\tfew\tfields"])
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "sts-test.csv"
    path.write_text(f"g\tf\ty\t1\t3.0\ta\tb\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"{path}:2: malformed"):
        read_stsb_file(str(path))


def test_missing_senteval_dir_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_stsb("dev", str(tmp_path))


def test_shared_stsb_splits_have_documented_sizes(data_dir: Path) -> None:
    sizes = {split: len(load_stsb(split, str(data_dir / "senteval"))) for split in ("train", "dev", "test")}
    assert sizes == {"train": 5749, "dev": 1500, "test": 1379}


def test_spearman_matches_independent_computation(tiny_model_dir: str, tmp_path: Path) -> None:
    """Spearman x 100 = Pearson of ranks of gold scores vs cosines of separately encoded sentences."""
    rows = [(float(i % 5) + 0.5 * (i % 2), SENTENCES[i], SENTENCES[(i + 3) % 12]) for i in range(12)]
    write_stsb_split(tmp_path / "sts.csv", rows)
    pairs = read_stsb_file(str(tmp_path / "sts.csv"))
    model, tokenizer = AutoModel.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = SentenceEncoder(model, tokenizer, "avg")
    cosines = []
    for s1, s2 in zip(pairs.sentences1, pairs.sentences2, strict=True):
        a, b = encoder.encode([s1])[0], encoder.encode([s2])[0]
        cosines.append(float(a @ b / (a.norm() * b.norm())))
    expected = 100 * np.corrcoef(rankdata(pairs.scores), rankdata(cosines))[0, 1]
    assert sts_spearman(encoder, pairs, batch_size=4) == pytest.approx(expected, abs=1e-6)


def test_pairs_round_trip_through_dataset() -> None:
    pairs = StsPairs(["a", "b"], ["c", "d"], [1.0, 2.0])
    assert StsPairs.from_dataset(pairs.to_dataset()) == pairs


@pytest.mark.slow
def test_minilm_cls_stsb_dev_matches_published_anchor(data_dir: Path) -> None:
    """all-MiniLM-L6-v2 with CLS pooling scores 79.73 on STS-B dev, as measured with sentence-transformers."""
    encoder = SentenceEncoder.from_pretrained(minilm_path(), pooler_type="cls_before_pooler")
    pairs = load_stsb("dev", str(data_dir / "senteval"))
    assert sts_spearman(encoder, pairs) == pytest.approx(79.73, abs=0.01)
