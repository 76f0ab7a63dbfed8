"""scripts/sick_triplets.py: SICK entailment pairs with their contradictions as training triplets. (The GPU
check's scripts have tests/test_gpu_check.py.)"""

from __future__ import annotations

from tests.conftest import REPO_ROOT


def _sick_triplets_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sick_triplets", REPO_ROOT / "scripts" / "sick_triplets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sick_triplets_pair_each_entailment_with_contradictions_of_either_side(tmp_path) -> None:
    """A entails B; C contradicts A (listed as B-A), D contradicts B: triplets (A, B, C) and (A, B, D); a neutral
    pair adds nothing; the CSV reads back as triplets through the training loader."""
    from mixcse_hf.training.data import load_corpus

    rows = [
        ("A man is playing", "A person is playing", "ENTAILMENT"),
        ("Nobody is playing", "A man is playing", "CONTRADICTION"),
        ("A person is playing", "No person is playing", "CONTRADICTION"),
        ("A man is playing", "A dog runs", "NEUTRAL"),
        ("A dog runs", "An animal runs", "ENTAILMENT"),
    ]
    sick = tmp_path / "SICK"
    sick.mkdir()
    lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
    lines += [f"{i}\t{a}\t{b}\t3.0\t{label}" for i, (a, b, label) in enumerate(rows)]
    (sick / "SICK_train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out" / "triplets.csv"
    _sick_triplets_module().main(["--senteval_dir", str(tmp_path), "--output", str(output)])
    corpus = load_corpus(train_file=str(output))
    assert [tuple(row.values()) for row in corpus] == [
        ("A man is playing", "A person is playing", "Nobody is playing"),
        ("A man is playing", "A person is playing", "No person is playing"),
    ]


def test_sick_triplets_from_the_shared_data(data_dir, tmp_path) -> None:
    module = _sick_triplets_module()
    triplets = module.sick_triplets(module.read_sick(str(data_dir / "senteval" / "SICK" / "SICK_train.txt")))
    assert len(triplets) == 600 and len({premise for premise, _, _ in triplets}) == 432
