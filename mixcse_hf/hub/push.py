"""Publish an existing checkpoint to the Hub.

    python -m mixcse_hf.hub.push PATH REPO_ID [--private] [--revision BRANCH] [--commit_message TEXT]

The token comes from ``huggingface-cli login`` or ``HF_TOKEN``; it is never printed or written. Before the
upload the folder is completed (remote-code file, sentence-transformers files) and the card re-rendered with
``REPO_ID`` as the model name; Trainer state (optimizer, scheduler, RNG, ``checkpoint-*``) is not uploaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from huggingface_hub import HfApi
from transformers import AutoModel

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.hub.card import CARD_INFO_FILE, read_card_info
from mixcse_hf.hub.export import add_auto_map, export_checkpoint
from mixcse_hf.models.encoder import default_pooler, is_adapter_folder, load_adapter_model, public_model_name
from mixcse_hf.models.lora import backbone_of
from mixcse_hf.models.pooling import CONFIG_POOLER_KEY

UPLOAD_IGNORE_PATTERNS = [
    # Trainer state and resume files
    *("checkpoint-*", "*.pt", "*.pth", "training_args.bin", "trainer_state.json"),
    # run records: local paths and values read from the environment live there
    *("run_config.yaml", "mixcse_run.json", "mixcse_card.json", "*_results.json", "training_curves.png"),
    *("_*", ".*"),
]
"""What a push never uploads; everything else in the folder is the model: weights, config, tokenizer, the remote-code
file, the sentence-transformers files and the card."""
FULL_MODEL_FILES = ("config.json", "model.safetensors")


def prepare_for_hub(path: str, repo_id: str) -> None:
    """Complete ``path`` for publishing under ``repo_id``: re-export our files and re-render the card."""
    if not os.path.isdir(path):
        raise UsageError(f"checkpoint {path!r} is not a directory")
    adapter = is_adapter_folder(path)
    if not adapter and not all(os.path.isfile(os.path.join(path, name)) for name in FULL_MODEL_FILES):
        raise UsageError(
            f"{path!r} holds neither a model (config.json + model.safetensors) nor a LoRA adapter "
            "(adapter_config.json + adapter_model.safetensors); pass a run's output_dir or a checkpoint-* folder"
        )
    if adapter:
        model = load_adapter_model(path)
        # The sentence-transformers files follow the config's pooler, which an adapter's base lacks: the pooler the
        # run recorded (in the card) goes there first.
        backbone = backbone_of(model)
        setattr(backbone.config, CONFIG_POOLER_KEY, default_pooler(backbone, path))
    else:
        model = AutoModel.from_pretrained(path)
        add_auto_map(model)
        model.config.save_pretrained(path)
    card = read_card_info(path)
    if card is None:
        print(f"note: {path} has no {CARD_INFO_FILE}: its README.md is uploaded as it is")
    if card is not None:  # cards written before base_model was made public could hold a local path
        base_model = public_model_name(card.base_model) if card.base_model else None
        card = replace(card, model_name=repo_id, base_model=base_model)
    export_checkpoint(path, model, card, for_hub=True)


def push_checkpoint(
    path: str, repo_id: str, private: bool = False, revision: str | None = None, commit_message: str | None = None
) -> str:
    """Prepare ``path`` and upload it to ``repo_id`` (created if missing); returns the commit URL."""
    prepare_for_hub(path, repo_id)
    HfApi().create_repo(repo_id, private=private, exist_ok=True)
    commit = upload_model_folder(path, repo_id, commit_message, revision)
    return str(getattr(commit, "commit_url", commit))


def upload_model_folder(
    path: str, repo_id: str, commit_message: str | None = None, revision: str | None = None, run_as_future: bool = False
) -> object:
    """Upload the model files of ``path`` (never what :data:`UPLOAD_IGNORE_PATTERNS` names) to ``repo_id``."""
    return HfApi().upload_folder(
        repo_id=repo_id,
        folder_path=path,
        ignore_patterns=UPLOAD_IGNORE_PATTERNS,
        revision=revision,
        commit_message=commit_message or "Upload MixCSE sentence encoder (mixcse_hf)",
        run_as_future=run_as_future,
    )


def push_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mixcse-push", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a run's output_dir or one of its checkpoint-* folders")
    parser.add_argument("repo_id", help="Hub repository, e.g. your-name/mixcse-bert-base")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to push to")
    parser.add_argument("--commit_message")
    args = parser.parse_args(argv)
    print(push_checkpoint(args.path, args.repo_id, args.private, args.revision, args.commit_message))


def main(argv: list[str] | None = None) -> int:
    return run_cli(push_command, argv)


if __name__ == "__main__":
    sys.exit(main())
