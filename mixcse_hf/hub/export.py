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
import logging
import os
from dataclasses import replace

import torch
from peft import PeftModel
from transformers import PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mixcse_hf.hub.card import ModelCardInfo, write_readme
from mixcse_hf.models import pooling
from mixcse_hf.models.encoder import write_adapter_pooling
from mixcse_hf.models.lora import backbone_of, pooler_dense
from mixcse_hf.models.prompts import Prompts
from mixcse_hf.models.sentence_transformers_format import write_sentence_transformers_files
from mixcse_hf.output_files import umask_file_mode

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


def apply_umask_to_weights(directory: str) -> None:
    """safetensors writes its files with mode 600 whatever the umask; give them the mode every other file
    gets."""
    mode = umask_file_mode()
    for root, folders, files in os.walk(directory):
        folders[:] = [name for name in folders if not name.startswith(PREFIX_CHECKPOINT_DIR)]  # fixed when saved
        for name in files:
            if name.endswith(".safetensors"):
                os.chmod(os.path.join(root, name), mode)


def export_checkpoint(
    directory: str, model: torch.nn.Module, card: ModelCardInfo | None = None, prompts: Prompts | None = None
) -> ModelCardInfo | None:
    """Write the remote-code file (full checkpoints) or the pooling file (adapters), the sentence-transformers files
    and the model card into ``directory``, which already holds the saved model (``config.json`` + safetensors, or a
    PEFT adapter). A full model's config must carry :func:`add_auto_map` before it is saved. The card's code loads
    the folder by its absolute path, which works here without network; a push renders it for the Hub id instead
    (:func:`mixcse_hf.hub.card.for_hub`). ``prompts`` go into the sentence-transformers files. Returns the card as
    written (None without one)."""
    backbone = backbone_of(model)
    if isinstance(model, PeftModel):
        write_adapter_pooling(directory, backbone.config)
    else:
        write_remote_code(directory, backbone)
    max_seq_length = min(backbone.config.max_position_embeddings, 512)
    has_st_files = write_sentence_transformers_files(directory, backbone, pooler_dense(model), max_seq_length, prompts)
    written = None
    if card is not None:
        written = replace(card, sentence_transformers=has_st_files, load_from=os.path.abspath(directory))
        write_readme(directory, written)
    apply_umask_to_weights(directory)
    return written
