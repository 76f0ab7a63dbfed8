"""Publishing a saved model folder to the Hub as it is: the files its save wrote, less the run's records.

Nothing in the folder is rewritten (``mixcse-push --export`` exports first): the model card is rendered for the
repository id (:func:`mixcse_hf.hub.card.for_hub`), listing the exported files that are fresh, and a LoRA adapter's
``adapter_config.json`` names its base by Hub id, in the upload only. An exported file that is stale (exported before
the model was trained on) stops the push. The token comes from ``huggingface-cli login`` or ``HF_TOKEN``; it is never
printed or written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, HTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

from mixcse_hf.errors import UsageError, first_line
from mixcse_hf.hub.card import README_FILE, ModelCardInfo, for_hub, render_model_card
from mixcse_hf.models.encoder import ADAPTER_FILES, is_adapter_folder, public_model_name
from mixcse_hf.models.exports import check_exports, exported_files

FULL_MODEL_FILES = ("config.json", "model.safetensors")
ADAPTER_CONFIG_FILE = ADAPTER_FILES[0]
DEFAULT_COMMIT_MESSAGE = "Upload MixCSE sentence encoder (mixcse_hf)"


def check_model_folder(path: str) -> None:
    """``path`` holds a model (``config.json`` + weights) or a LoRA adapter; else a one-line :class:`UsageError`."""
    if not os.path.isdir(path):
        raise UsageError(f"checkpoint {path!r} is not a directory")
    if not is_adapter_folder(path) and not all(os.path.isfile(os.path.join(path, name)) for name in FULL_MODEL_FILES):
        raise UsageError(
            f"{path!r} holds neither a model (config.json + model.safetensors) nor a LoRA adapter "
            "(adapter_config.json + adapter_model.safetensors); pass a run's output_dir or a checkpoint-* folder"
        )


def _folder_files(folder: str) -> list[str]:
    """Every file under ``folder``, as a path relative to it with ``/`` separators (as the Hub names them)."""
    return [
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
        for root, _, names in os.walk(folder)
        for name in names
    ]


def published_adapter_config(folder: str) -> bytes:
    """``adapter_config.json`` naming the base by Hub id where one is known. PEFT records the base as it was
    loaded, often a local directory (the quick-start model's package copy), which means nothing on the Hub."""
    with open(os.path.join(folder, ADAPTER_CONFIG_FILE), encoding="utf-8") as handle:
        config = json.load(handle)
    hub_id = public_model_name(config.get("base_model_name_or_path") or "")
    if hub_id:
        config["base_model_name_or_path"] = hub_id
    return (json.dumps(config, indent=2) + "\n").encode()


def hub_contents(
    folder: str, repo_id: str, card: ModelCardInfo | None, ignore_patterns: Sequence[str]
) -> dict[str, str | bytes]:
    """What an upload of ``folder`` to ``repo_id`` holds: path in the repository -> the local file uploaded as it
    is, or the bytes that stand for it (the card rendered for ``repo_id``, a published adapter config)."""
    names = sorted(filter_repo_objects(_folder_files(folder), ignore_patterns=list(ignore_patterns)))
    contents: dict[str, str | bytes] = {name: os.path.join(folder, name) for name in names}
    if card is not None:
        card = replace(card, exports=exported_files(folder))
        contents[README_FILE] = render_model_card(for_hub(card, repo_id)).encode()
    if ADAPTER_CONFIG_FILE in contents:
        contents[ADAPTER_CONFIG_FILE] = published_adapter_config(folder)
    return contents


def upload_model_folder(
    folder: str,
    repo_id: str,
    card: ModelCardInfo | None,
    ignore_patterns: Sequence[str],
    commit_message: str | None = None,
    revision: str | None = None,
    run_as_future: bool = False,
) -> object:
    """One commit of :func:`hub_contents` to ``repo_id``; a future of it with ``run_as_future``."""
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=content)
        for name, content in hub_contents(folder, repo_id, card, ignore_patterns).items()
    ]
    return HfApi().create_commit(
        repo_id,
        operations,
        commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        revision=revision,
        run_as_future=run_as_future,
    )


HUB_ERRORS = (HTTPError, OfflineModeIsEnabled)
"""What huggingface_hub raises when the Hub cannot be reached or refuses: :func:`hub_problem` says it in one line."""


def push_model_folder(
    folder: str,
    repo_id: str,
    card: ModelCardInfo | None,
    ignore_patterns: Sequence[str],
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Check ``folder`` (its exported files fresh too), create ``repo_id`` if missing and upload the folder to it;
    returns the commit URL."""
    check_model_folder(folder)
    check_exports(folder)
    try:
        HfApi().create_repo(repo_id, private=private, exist_ok=True)
        commit = upload_model_folder(folder, repo_id, card, ignore_patterns, commit_message, revision)
    except HUB_ERRORS as err:
        raise hub_problem(err, folder, repo_id) from err
    return str(getattr(commit, "commit_url", commit))


def hub_problem(err: Exception, folder: str, repo_id: str) -> UsageError:
    """The one-line error for a push that huggingface_hub could not make: offline mode, no connection, or the Hub's
    refusal (its status and message), with what to do; the folder is left as it was, ready to push again."""
    again = f"then publish the folder again: mixcse-push {folder} {repo_id}"
    if isinstance(err, OfflineModeIsEnabled):
        cause, fix = "offline mode is on", f"unset HF_HUB_OFFLINE, {again}"
    elif isinstance(err, HfHubHTTPError) and err.response is not None:
        response = err.response
        cause = f"HTTP {response.status_code} {response.reason_phrase}"
        cause += f": {err.server_message}" if err.server_message else ""
        if response.status_code in (401, 403):
            fix = f"log in with a token that can write to it (hf auth login, or HF_TOKEN), {again}"
        else:
            fix = f"check the repository id and the Hub's status, {again}"
    else:
        cause = f"{type(err).__name__}: {first_line(err)}"
        fix = f"check the network connection (and HF_ENDPOINT), {again}"
    return UsageError(f"cannot push {folder!r} to the Hub repository {repo_id!r} ({cause}); {fix}")
