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
from transformers import PreTrainedModel

from mixcse_hf.hub.card import ModelCardInfo, write_model_card
from mixcse_hf.models import pooling
from mixcse_hf.models.encoder import public_model_name, write_adapter_pooling
from mixcse_hf.models.lora import backbone_of, pooler_dense
from mixcse_hf.models.sentence_transformers_format import write_sentence_transformers_files
from mixcse_hf.paths import umask_file_mode

logger = logging.getLogger(__name__)

REMOTE_CODE_FILE = "modeling_mixcse.py"


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
