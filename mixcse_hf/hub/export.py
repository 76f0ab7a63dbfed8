"""What a checkpoint carries besides the backbone weights, so that all three ways of loading it give the same
embeddings:

- ``transformers.AutoModel.from_pretrained(path)``: the plain encoder (no remote code); the MLP is its pooler.
- ``AutoModel.from_pretrained(path, trust_remote_code=True)``: ``modeling_mixcse.py`` (the source of
  :mod:`mixcse_hf.models.pooling` plus one class line) via ``auto_map``; outputs gain ``sentence_embedding``.
- ``SentenceTransformer(path)``: ``modules.json`` with Transformer + Pooling (+ a Tanh Dense holding the MLP
  when the embedding includes it), in the format every sentence-transformers release reads.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import replace

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import PreTrainedModel

from mixcse_hf.hub.card import ModelCardInfo, write_model_card
from mixcse_hf.models import pooling
from mixcse_hf.models.encoder import ST_MODE_KEYS, public_model_name, write_adapter_pooling
from mixcse_hf.models.lora import backbone_of, pooler_dense
from mixcse_hf.models.pooling import get_pooler, recorded_pooler
from mixcse_hf.paths import umask_file_mode

logger = logging.getLogger(__name__)

REMOTE_CODE_FILE = "modeling_mixcse.py"
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
    "2_Dense",
)


def remote_code_class_name(model: PreTrainedModel) -> str:
    return f"MixCSE{type(model).__name__}"


def remote_code_source(model: PreTrainedModel) -> str:
    """:mod:`mixcse_hf.models.pooling` verbatim, plus the encoder class with a ``sentence_embedding`` output."""
    base = type(model).__name__
    return (
        inspect.getsource(pooling)
        + f"\n\nfrom transformers import {base}  # noqa: E402\n\n\n"
        + f"class {remote_code_class_name(model)}(SentenceEmbeddingMixin, {base}):\n"
        + f'    """{base} whose outputs also carry ``sentence_embedding`` (the pooler recorded in the config)."""\n'
    )


def add_auto_map(model: PreTrainedModel) -> None:
    """Point ``AutoModel`` (with ``trust_remote_code=True``) at the class in :data:`REMOTE_CODE_FILE`."""
    model.config.auto_map = {"AutoModel": f"{REMOTE_CODE_FILE[:-3]}.{remote_code_class_name(model)}"}


def write_remote_code(directory: str, model: PreTrainedModel) -> None:
    with open(os.path.join(directory, REMOTE_CODE_FILE), "w", encoding="utf-8") as handle:
        handle.write(remote_code_source(model))


def _write_json(path: str, values: dict | list) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2)
        handle.write("\n")


def write_sentence_transformers_files(
    directory: str, model: PreTrainedModel, pooler_dense: torch.nn.Linear | None, max_seq_length: int
) -> bool:
    """Write the sentence-transformers module files for the recorded pooler; ``False`` when that pooler has no
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
    _write_json(os.path.join(directory, "config_sentence_transformers.json"), {"similarity_fn_name": "cosine"})
    return True


def publish_adapter_base(directory: str) -> None:
    """PEFT records the base model as it was loaded, often a local directory (the quick-start model's package copy):
    the loaders find it there offline, but on the Hub it means nothing. Record its Hub id instead where one is
    known."""
    path = os.path.join(directory, "adapter_config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    hub_id = public_model_name(config.get("base_model_name_or_path") or "")
    if hub_id and hub_id != config.get("base_model_name_or_path"):
        config["base_model_name_or_path"] = hub_id
        _write_json(path, config)


def apply_umask_to_weights(directory: str) -> None:
    """safetensors writes its files with mode 600 whatever the umask; give them the mode every other file
    gets."""
    mode = umask_file_mode()
    for root, folders, files in os.walk(directory):
        folders[:] = [name for name in folders if not name.startswith("checkpoint-")]  # fixed when saved
        for name in files:
            if name.endswith(".safetensors"):
                os.chmod(os.path.join(root, name), mode)


def export_checkpoint(
    directory: str, model: torch.nn.Module, card: ModelCardInfo | None = None, for_hub: bool = False
) -> None:
    """Write the remote-code file (full checkpoints) or the pooling file (adapters), the sentence-transformers files
    and the model card into ``directory``, which already holds the saved model (``config.json`` + safetensors, or a
    PEFT adapter). A full model's config must carry :func:`add_auto_map` before it is saved. ``for_hub``: the folder
    is to be uploaded, so an adapter names its base by Hub id and the card's code loads the card's model name;
    otherwise they name local paths, which load here without network."""
    backbone = backbone_of(model)
    if isinstance(model, PeftModel):
        write_adapter_pooling(directory, backbone.config)
        if for_hub:
            publish_adapter_base(directory)
    else:
        write_remote_code(directory, backbone)
    max_seq_length = min(backbone.config.max_position_embeddings, 512)
    has_st_files = write_sentence_transformers_files(directory, backbone, pooler_dense(model), max_seq_length)
    if card is not None:
        load_from = None if for_hub else os.path.abspath(directory)
        write_model_card(directory, replace(card, sentence_transformers=has_st_files, load_from=load_from))
    apply_umask_to_weights(directory)
