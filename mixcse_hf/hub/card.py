"""The model card (``README.md``) of a checkpoint: Hub metadata, the training recipe, measured STS results,
how to load it three ways, and the citations."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from mixcse_hf.losses.mixcse import HARD_NEGATIVE_OPTIONS, LOGGING_OPTIONS
from mixcse_hf.models.encoder import public_model_name
from mixcse_hf.models.exports import BACKENDS
from mixcse_hf.models.pooling import POOLERS

DEFAULT_EXPORTED_FILES = {f"{backend.folder}/{backend.default_file}" for backend in BACKENDS.values() if backend.folder}
"""What ``SentenceTransformer(path, backend=...)`` loads without a ``file_name``."""
WIKI1M_DATASET = "princeton-nlp/datasets-for-simcse"
STS_DATASETS = {
    # split label -> (model-index dataset name, Hub copy, its split, the SentEval file)
    "dev": ("STS Benchmark (dev)", "mteb/stsbenchmark-sts", "validation", "sts-dev.csv"),
    "test": ("STS Benchmark (test)", "mteb/stsbenchmark-sts", "test", "sts-test.csv"),
}
CITATIONS = """```bibtex
@inproceedings{zhang2022mixcse,
  title     = {Unsupervised Sentence Representation via Contrastive Learning with Mixing Negatives},
  author    = {Zhang, Yanzhao and Zhang, Richong and Mensah, Samuel and Liu, Xudong and Mao, Yongyi},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2022}
}
@inproceedings{gao2021simcse,
  title     = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {Empirical Methods in Natural Language Processing (EMNLP)},
  year      = {2021}
}
```"""


@dataclass
class ModelCardInfo:
    """What the card states. ``stsb_spearman`` maps a split (dev/test) to Spearman x 100 for ``pooler``, as the
    run's final evaluation measured it; ``metrics`` are the evaluators' metrics at the latest evaluation during
    training (step ``metrics_step``), whatever they are; ``best_metric`` is ``{"metric": name, "value": v}`` when
    a best model was tracked (``metric_for_best_model``)."""

    model_name: str
    base_model: str | None
    pooler: str
    recipe: dict[str, object]
    train_data: str | None = None
    stsb_spearman: dict[str, float] = field(default_factory=dict)
    sentence_transformers: bool = True
    lora: dict[str, object] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_step: int | None = None
    best_metric: dict[str, object] | None = None
    sts_source: str = "hub"
    """Where the STS-B scores came from: ``"hub"`` (MTEB's copy) or ``"senteval"`` (local SentEval files)."""
    load_from: str | None = None
    """What the card's code loads: the folder's absolute path, or unset for the Hub copy (``model_name``)."""
    versions: dict[str, str] = field(default_factory=dict)
    """The versions the model was trained with (:func:`mixcse_hf.versions.stack_versions`)."""
    prompts: dict[str, str] = field(default_factory=dict)
    """The sentence-transformers prompts the model was trained with, by name (:mod:`mixcse_hf.models.prompts`)."""
    default_prompt_name: str | None = None
    include_prompt: bool = True
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The fresh exported files by path (``onnx/model.onnx``…), each with its description and, when measured, its
    ``stsb_test_spearman`` (:func:`mixcse_hf.models.exports.exported_files`); set when the card is written after an
    export or for a push."""


def sts_results(info: ModelCardInfo) -> dict[str, float]:
    """STS-B Spearman by split for the model-index: the final evaluation's, else the dev score of the latest
    evaluation during training."""
    if info.stsb_spearman:
        return info.stsb_spearman
    return {"dev": info.metrics["stsb_spearman"]} if "stsb_spearman" in info.metrics else {}


def card_metadata(info: ModelCardInfo) -> ModelCardData:
    """The card's Hub metadata (``huggingface_hub``'s ``ModelCardData``), with the STS-B results as model-index."""
    datasets = [WIKI1M_DATASET] if info.train_data and "wiki1m" in os.path.basename(info.train_data) else []
    if info.train_data and "/" in info.train_data and not os.path.exists(info.train_data):
        datasets = [info.train_data]  # a Hub dataset id
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "mixcse", "simcse", "mixcse_hf"]
    if info.lora:
        tags += ["peft", "lora"]
    eval_results = [
        EvalResult(
            task_type="sentence-similarity",
            task_name="Semantic Textual Similarity",
            # The Hub copy's id when the scores came from it, else the SentEval file that was read.
            dataset_type=STS_DATASETS[split][1] if info.sts_source == "hub" else STS_DATASETS[split][3],
            dataset_name=STS_DATASETS[split][0] + ("" if info.sts_source == "hub" else ", SentEval file"),
            dataset_split=STS_DATASETS[split][2],
            metric_type="cosine_spearman",
            metric_value=round(value, 2),
            metric_name="Spearman (cosine) x100",
        )
        for split, value in sts_results(info).items()
    ]
    return ModelCardData(
        library_name="sentence-transformers" if info.sentence_transformers else "transformers",
        pipeline_tag="sentence-similarity",
        tags=tags,
        base_model=info.base_model,
        datasets=datasets or None,
        model_name=info.model_name,
        eval_results=eval_results or None,
    )


def _evaluation_section(info: ModelCardInfo) -> str:
    """What the run measured: the final STS-B numbers and the evaluators' metrics during training."""
    sections = []
    if info.stsb_spearman:
        rows = "\n".join(f"| STS-B {split} | {value:.2f} |" for split, value in info.stsb_spearman.items())
        sections.append(
            f"Spearman x100 of cosine similarities, pooler `{info.pooler}`, measured by the run:\n\n"
            f"| data | Spearman |\n|---|---|\n{rows}\n"
        )
    if info.metrics:
        rows = "\n".join(f"| `{name}` | {value:.4g} |" for name, value in info.metrics.items())
        sections.append(
            f"Evaluation during training, at step {info.metrics_step}:\n\n| metric | value |\n|---|---|\n{rows}\n"
        )
    if info.best_metric:
        sections.append(
            f"Best model chosen by `{info.best_metric['metric']}` (best value {info.best_metric['value']:.4g}).\n"
        )
    return "\n## Results\n\n" + "\n".join(sections) if sections else ""


def render_model_card(info: ModelCardInfo) -> str:
    recipe_rows = "\n".join(f"| `{key}` | {value} |" for key, value in info.recipe.items())
    results = _evaluation_section(info)
    name = json.dumps(info.load_from or info.model_name)  # a Python string literal
    lora = _lora_section(info) if info.lora else ""
    st_usage = (
        f"""
### sentence-transformers

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer({name})
embeddings = model.encode(["A man is playing a guitar.", "Someone plays an instrument."])
```
"""
        if info.sentence_transformers
        else f"\nThe `{info.pooler}` pooler has no sentence-transformers equivalent; use one of the ways below.\n"
    )
    st_usage += _prompts_note(info)
    st_usage += _exports_section(info, name)
    start = f"`{info.base_model}`" if info.base_model else "a local model"
    recorded = (
        "recorded in `mixcse_pooling.json`, as an adapter folder has no `config.json` of its own"
        if info.lora
        else "recorded in `config.json` as `mixcse_pooler_type` / `mixcse_mlp_only_train`"
    )
    # An adapter folder carries no modeling_mixcse.py: the pooling head needs a full (or merged) checkpoint.
    remote_code = (
        ""
        if info.lora
        else f"""
### transformers with the pooling head (`trust_remote_code=True`)

```python
model = AutoModel.from_pretrained({name}, trust_remote_code=True)
embedding = model(**batch).sentence_embedding
```
"""
    )
    body = f"""# {info.model_name}

A sentence-embedding model trained with **MixCSE** (contrastive learning with mixed hard negatives) by
mixcse_hf, starting from {start}. Sentence embedding: pooler `{info.pooler}` ({recorded}). Compare embeddings with
cosine similarity.
{lora}
## Usage
{st_usage}
### transformers, no remote code

```python
import torch
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained({name})
model = AutoModel.from_pretrained({name})
batch = tokenizer(["A man is playing a guitar."], padding=True, return_tensors="pt")
with torch.no_grad():
    outputs = model(**batch, output_hidden_states=True)
{_plain_pooling_code(info.pooler)}
```

{remote_code}
## Training

| setting | value |
|---|---|
{recipe_rows}
{results}{_versions_section(info)}
## Citation

{CITATIONS}
"""
    return f"---\n{card_metadata(info).to_yaml()}\n---\n\n{body}"


def _prompts_note(info: ModelCardInfo) -> str:
    """How each loader applies the prompts the model was trained with (none: nothing to say)."""
    if not info.prompts:
        return ""
    named = ", ".join(f"`{name}`: {json.dumps(prompt)}" for name, prompt in info.prompts.items())
    default = (
        f" `encode` applies `{info.default_prompt_name}` by itself;"
        if info.default_prompt_name
        else " without `prompt_name`, `encode` applies none;"
    )
    pooled = (
        ""
        if info.include_prompt
        else " The prompt's tokens are not pooled: set the attention mask to 0 over the first "
        '`len(tokenizer(prompt)["input_ids"]) - 1` tokens ([CLS] and the prompt) before pooling.'
    )
    return (
        f"\nTrained with prompts ({named}), saved as sentence-transformers prompts: pass "
        f"`prompt_name=NAME` to `encode` for the texts of that kind;{default} `mixcse-encode` takes `--prompt NAME`. "
        f"The `transformers` loaders below know no prompts: put the prompt before each text yourself.{pooled}\n"
    )


def _exports_section(info: ModelCardInfo, name: str) -> str:
    """The exported files, their measured quality and the one-line loads, for CPU serving."""
    if not info.exports:
        return ""
    measured = f"STS-B test Spearman x100, pooler `{info.pooler}`"
    rows = "\n".join(
        f"| `{path}` | {entry['description']} | "
        + (f"{entry['stsb_test_spearman']:.2f}" if "stsb_test_spearman" in entry else "not measured")
        + " |"
        for path, entry in info.exports.items()
    )
    torch_score = info.stsb_spearman.get("test")
    reference = f"\n\nThe torch model: {torch_score:.2f} (the run's own evaluation)." if torch_score is not None else ""
    loads = "\n".join(
        f'model = SentenceTransformer({name}, backend="{path.split("/")[0]}"'
        + ("" if path in DEFAULT_EXPORTED_FILES else f', model_kwargs={{"file_name": "{path}"}}')
        + ")"
        for path in info.exports
    )
    return f"""
### ONNX and OpenVINO, for CPUs

Exported by `mixcse-export`; each graph is the encoder, and the pooling (with its MLP, for a pooler that has one) is
applied after it.

| file | what | {measured} |
|---|---|---|
{rows}{reference}

```python
from sentence_transformers import SentenceTransformer
{loads}
```

sentence-transformers runs them with its `onnx` / `openvino` extra (optimum); `mixcse-encode`, `mixcse-eval` and
`mixcse-mine` run them with `--backend onnx|openvino [--file_name ...]` after `pip install "mixcse_hf[onnx]"`.
"""


def _versions_section(info: ModelCardInfo) -> str:
    if not info.versions:
        return ""
    rows = "\n".join(f"- {name}: {value}" for name, value in info.versions.items())
    return f"\n## Framework versions\n\n{rows}\n"


LORA_REMOTE_CODE = (
    "`trust_remote_code=True` adds no pooling head to an adapter folder (it has no `modeling_mixcse.py`): it gives "
    "the base with the adapter and no `sentence_embedding`; pool as shown below, or train with `--merge_lora true` "
    "for a checkpoint that has the head."
)
"""What the card of a LoRA adapter says about ``trust_remote_code``, which loads without error but not the head."""


def _lora_section(info: ModelCardInfo) -> str:
    """What a LoRA adapter needs to load, and how it loads without network."""
    settings = ", ".join(f"{key}={value}" for key, value in (info.lora or {}).items())
    base = f"`{info.base_model}`" if info.base_model else "a local model"
    return (
        f"\nThis checkpoint is a LoRA adapter (PEFT) on {base}: {settings}. Loading it needs `peft` and the base "
        "model that `base_model_name_or_path` in `adapter_config.json` names: in a folder saved by training, the "
        "local directory the run started from, so the code below runs there without network; in the copy on the "
        "Hub, the base's Hub id where it has one. **Offline** elsewhere: set `base_model_name_or_path` to the "
        f"directory of your local copy of the base. {LORA_REMOTE_CODE}\n"
    )


def _plain_pooling_code(pooler: str) -> str:
    code = POOLERS[pooler].card_code if pooler in POOLERS else None
    return code or f"# pooler {pooler}: see mixcse_hf.models.pooling.POOLERS, or use trust_remote_code=True"


README_FILE = "README.md"


def write_readme(directory: str, info: ModelCardInfo) -> None:
    with open(os.path.join(directory, README_FILE), "w", encoding="utf-8") as handle:
        handle.write(render_model_card(info))


def for_hub(info: ModelCardInfo, repo_id: str) -> ModelCardInfo:
    """The card of a folder saved by training as it reads on the Hub under ``repo_id``: named by it, its code
    loading it from there, its base model a Hub id or nothing (a local path means nothing on the Hub)."""
    base_model = public_model_name(info.base_model) if info.base_model else None
    return replace(info, model_name=repo_id, base_model=base_model, load_from=None)


TEXT_LAYOUTS = {
    1: "unsupervised (two dropout views of each sentence)",
    2: "supervised pairs (anchor, positive)",
    3: "supervised triplets (anchor, positive, hard negative)",
}
"""What a row of the training data is, by its number of text columns."""


def training_objective(mix_lambda: float | None, text_columns: int) -> str:
    """E.g. "MixCSE, unsupervised (two dropout views…)" or "SimCSE (no mixed negatives), supervised triplets…"."""
    method = "MixCSE" if mix_lambda else "SimCSE (no mixed negatives)"
    return f"{method}, {TEXT_LAYOUTS.get(text_columns, TEXT_LAYOUTS[1])}"


def training_recipe(loss_options: dict[str, Any], text_columns: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The card's training table: the objective, the loss's options as the loss reports them
    (``MixCSELoss.options()``; those that only log left out, the hard-negative ones only for triplets), then the
    run's other ``settings`` (batch, learning rate, data…)."""
    loss = {
        name: value
        for name, value in loss_options.items()
        if name not in LOGGING_OPTIONS and (text_columns == 3 or name not in HARD_NEGATIVE_OPTIONS)
    }
    return {"objective": training_objective(loss_options.get("mix_lambda"), text_columns), **loss, **settings}
