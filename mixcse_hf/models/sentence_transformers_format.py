"""The sentence-transformers folder format, read and written here only: ``modules.json`` (Transformer + Pooling, plus
a Tanh ``Dense`` holding the MLP when the embedding includes it), the Pooling config, ``sentence_bert_config.json``
(``max_seq_length``) and ``config_sentence_transformers.json``. Written in the format every sentence-transformers
release reads; read from the folders of any release.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from safetensors.torch import save_file

from mixcse_hf.errors import UsageError
from mixcse_hf.models.pooling import POOLERS, get_pooler, recorded_pooler

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from mixcse_hf.models.prompts import Prompts

logger = logging.getLogger(__name__)

SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
    "2_Dense",
)
"""What :func:`write_sentence_transformers_files` writes into a model folder."""
ST_MODE_KEYS = {"cls": "cls_token", "mean": "mean_tokens", "lasttoken": "lasttoken"}
"""sentence-transformers ``Pooling`` config keys (``pooling_mode_<key>``) per mode of :class:`Pooler`."""


def sentence_transformers_pooler(path: str) -> str | None:
    """The pooler matching a sentence-transformers directory's own Pooling module, or ``None`` if ``path`` is
    not one. Modules after pooling other than Normalize (which cosine similarity ignores) are refused."""
    modules_file = os.path.join(path, "modules.json")
    if not os.path.isfile(modules_file):
        return None
    with open(modules_file, encoding="utf-8") as handle:
        modules = json.load(handle)
    pooling = [m for m in modules if m["type"].endswith(".Pooling")]
    others = [m["type"] for m in modules if not m["type"].endswith((".Transformer", ".Pooling", ".Normalize"))]
    if len(pooling) != 1 or others:
        raise UsageError(
            f"{modules_file}: only Transformer + Pooling (+ Normalize) sentence-transformers models are supported, "
            f"found {[m['type'] for m in modules]}; pass --pooler explicitly to use the bare encoder"
        )
    with open(os.path.join(path, pooling[0]["path"], "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    # The first registered pooler without the MLP for each sentence-transformers mode: cls -> cls_before_pooler.
    by_mode: dict[str, str] = {}
    for pooler in POOLERS.values():
        if pooler.sentence_transformers_mode and not pooler.uses_mlp:
            by_mode.setdefault(pooler.sentence_transformers_mode, pooler.name)
    if "pooling_mode" in config:  # sentence-transformers >= 6: "pooling_mode": "cls" (or a list of modes)
        mode = config["pooling_mode"]
        active = [mode] if isinstance(mode, str) else list(mode)
    else:  # earlier: one boolean per mode, "pooling_mode_cls_token": true
        keys = {f"pooling_mode_{ST_MODE_KEYS[mode]}": mode for mode in by_mode}
        active = [keys.get(key, key) for key, value in config.items() if key.startswith("pooling_mode") and value]
    if len(active) != 1 or active[0] not in by_mode:
        raise UsageError(f"{path}: unsupported sentence-transformers pooling {active}; pass --pooler explicitly")
    return by_mode[active[0]]


def sentence_transformers_max_seq_length(path: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers directory's ``sentence_bert_config.json``, else ``None``."""
    config_file = os.path.join(path, "sentence_bert_config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file, encoding="utf-8") as handle:
        return json.load(handle).get("max_seq_length")


def _write_json(path: str, values: dict | list) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2)
        handle.write("\n")


def write_sentence_transformers_files(
    directory: str,
    model: PreTrainedModel,
    pooler_dense: torch.nn.Linear | None,
    max_seq_length: int,
    prompts: Prompts | None = None,
) -> bool:
    """Write the sentence-transformers module files for the recorded pooler, with ``prompts`` (``prompts`` and
    ``default_prompt_name``; the Pooling's ``include_prompt`` when false); ``False`` when that pooler has no
    sentence-transformers equivalent (its registry entry has no ``sentence_transformers_mode``)."""
    pooler_type = recorded_pooler(model.config)
    pooler = get_pooler(pooler_type)
    mode = pooler.sentence_transformers_mode
    if mode is None:
        logger.warning("pooler %s has no sentence-transformers equivalent: no sentence-transformers files", pooler_type)
        return False
    hidden_size = model.config.hidden_size
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    os.makedirs(os.path.join(directory, "1_Pooling"), exist_ok=True)
    _write_json(
        os.path.join(directory, "1_Pooling", "config.json"),
        {
            "word_embedding_dimension": hidden_size,
            **{f"pooling_mode_{key}": mode == name for name, key in ST_MODE_KEYS.items()},
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            **({"include_prompt": False} if prompts and not prompts.include_prompt else {}),
        },
    )
    if pooler.uses_mlp:
        if pooler_dense is None:
            raise ValueError(f"pooler {pooler_type!r} needs the encoder's pooler dense layer (the MLP) to export")
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        os.makedirs(os.path.join(directory, "2_Dense"), exist_ok=True)
        _write_json(
            os.path.join(directory, "2_Dense", "config.json"),
            {
                "in_features": hidden_size,
                "out_features": hidden_size,
                "bias": True,
                "activation_function": "torch.nn.modules.activation.Tanh",
            },
        )
        save_file(
            {
                "linear.weight": pooler_dense.weight.detach().cpu().contiguous(),
                "linear.bias": pooler_dense.bias.detach().cpu().contiguous(),
            },
            os.path.join(directory, "2_Dense", "model.safetensors"),
        )
    _write_json(os.path.join(directory, "modules.json"), modules)
    _write_json(
        os.path.join(directory, "sentence_bert_config.json"), {"max_seq_length": max_seq_length, "do_lower_case": False}
    )
    prompt_settings = {"prompts": prompts.by_column, "default_prompt_name": prompts.default_name} if prompts else {}
    _write_json(
        os.path.join(directory, "config_sentence_transformers.json"),
        {"similarity_fn_name": "cosine", **prompt_settings},
    )
    return True


def _read_json(path: str) -> Any:
    """The JSON file ``path``, or ``{}`` where there is none."""
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def sentence_transformers_prompts(path: str) -> tuple[dict[str, str], str | None, bool]:
    """A sentence-transformers directory's prompts, default prompt name and whether its Pooling pools the prompt
    (``include_prompt``); none, ``None`` and ``True`` where it records none (or is no such directory)."""
    config = _read_json(os.path.join(path, "config_sentence_transformers.json"))
    modules = _read_json(os.path.join(path, "modules.json")) or []
    pooling = [m for m in modules if m["type"].endswith(".Pooling")]
    pooling_config = _read_json(os.path.join(path, pooling[0]["path"], "config.json")) if pooling else {}
    return config.get("prompts") or {}, config.get("default_prompt_name"), pooling_config.get("include_prompt", True)
