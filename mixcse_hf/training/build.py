"""What a training run is built from: the model, the training data with its collator, and the model card's facts."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import datasets
from torch import nn
from transformers import PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError
from mixcse_hf.hub.card import ModelCardInfo, training_recipe
from mixcse_hf.losses.mixcse import HARD_NEGATIVE_OPTIONS
from mixcse_hf.models.dropout import TrainingDropout
from mixcse_hf.models.encoder import AUTO_POOLER, load_backbone, public_model_name, reinit_mlp
from mixcse_hf.models.families import choose_padding_free
from mixcse_hf.models.lora import apply_lora
from mixcse_hf.models.packing import check_sequence_length
from mixcse_hf.models.pooling import CONFIG_POOLER_KEY, get_pooler, inference_pooler
from mixcse_hf.models.prompts import Prompts, check_prompt_pooling, check_prompt_room
from mixcse_hf.training.arguments import DataArguments, ModelArguments
from mixcse_hf.training.data import load_corpus, text_column_count, tokenize_training_data, training_collator
from mixcse_hf.training.streaming import StreamingCorpus, TokenizingCollator, row_source
from mixcse_hf.training.training_args import MixCSETrainingArguments
from mixcse_hf.versions import stack_versions


def build_model(
    model_args: ModelArguments,
    training_args: MixCSETrainingArguments,
    resuming: bool,
    max_seq_length: int | None = None,
    dropout: TrainingDropout | None = None,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The encoder (fresh MLP unless resuming or told not to; LoRA-wrapped when asked) and its tokenizer; given
    ``max_seq_length``, checked to have the positions for it; given ``dropout``, built with the training dropout it
    decides (which it then records). ``pooler_type`` and ``padding_free`` ``auto`` are resolved for this model, in
    ``training_args``."""
    model, tokenizer = load_backbone(
        model_args.model_name_or_path,
        training_args.pooler_type,
        training_args.mlp_only_train,
        training_args.bidirectional,
        dropout.overrides if dropout is not None else None,
    )
    if training_args.pooler_type == AUTO_POOLER:
        training_args.pooler_type = getattr(model.config, CONFIG_POOLER_KEY)
        check_prompt_pooling(
            training_args.pooler_type, training_args.mlp_only_train, training_args.prompts, training_args.include_prompt
        )
    if max_seq_length is not None:
        check_sequence_length(model, max_seq_length)
    padding_free = choose_padding_free(training_args.padding_free, model.config, max_seq_length)
    training_args.padding_free = str(padding_free).lower()
    uses_mlp = get_pooler(training_args.pooler_type).uses_mlp
    if uses_mlp and model_args.reinit_mlp and not resuming:
        reinit_mlp(model)
    if not uses_mlp and getattr(model, "pooler", None) is not None:
        model.pooler.requires_grad_(False)  # unused: frozen, so DDP needs no unused-parameter search
    if model_args.use_lora:
        model = apply_lora(
            model,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_target_modules,
            train_mlp=uses_mlp,
        )
    return model, tokenizer


@dataclass
class TrainingData:
    """The training rows and how a batch of them is made."""

    dataset: datasets.Dataset | StreamingCorpus
    collator: Callable[[list[dict]], dict]

    @property
    def text_columns(self) -> int:
        """1 for one sentence per row (unsupervised), 2 for pairs, 3 for triplets."""
        return text_column_count(self.dataset)


def load_training_corpus(
    data_args: DataArguments, training_args: MixCSETrainingArguments
) -> datasets.Dataset | StreamingCorpus:
    """The training rows before tokenisation: a :class:`StreamingCorpus` with ``streaming``, else the whole corpus.
    Data that cannot make one training step, or lacks the columns the loss options need, is refused."""
    if data_args.streaming:
        corpus = StreamingCorpus(
            row_source(
                data_args.train_file, data_args.dataset_name, data_args.dataset_config_name, data_args.dataset_split
            ),
            global_batch_size=training_args.per_device_train_batch_size * training_args.world_size,
            shuffle_buffer_size=data_args.shuffle_buffer_size,
            seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
            text_column=data_args.text_column,
            text_columns=data_args.text_columns,
            max_rows=data_args.max_train_samples,
        )
        check_loss_fits_data(corpus.column_names, training_args)
        if not corpus.has_one_batch():
            raise UsageError(
                f"the training data has fewer usable rows than one batch of {corpus.global_batch_size}: nothing "
                "would be trained; add data or lower per_device_train_batch_size (>= 2)"
            )
        return corpus
    with training_args.main_process_first(desc="corpus loading"):
        corpus = load_corpus(
            data_args.train_file,
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.dataset_split,
            data_args.text_column,
            data_args.max_train_samples,
            data_args.text_columns,
        )
        check_loss_fits_data(corpus.column_names, training_args)
        check_one_batch(len(corpus), training_args)
    return corpus


def build_training_data(
    data_args: DataArguments,
    training_args: MixCSETrainingArguments,
    tokenizer: PreTrainedTokenizerBase,
    corpus: datasets.Dataset | StreamingCorpus | None = None,
    prompts: Prompts | None = None,
) -> TrainingData:
    """With ``streaming``, raw rows read as training goes (:class:`StreamingCorpus`) and tokenised per batch; else
    tokenised up front, flat features (unsupervised) or one mapping per column (supervised), padded per batch.
    ``corpus``: :func:`load_training_corpus`'s (else loaded here); ``prompts``: put before each column's texts."""
    if corpus is None:
        corpus = load_training_corpus(data_args, training_args)
    prompts = prompts or Prompts()
    check_prompt_room(tokenizer, prompts, data_args.max_seq_length)
    by_column = prompts.by_column
    if isinstance(corpus, StreamingCorpus):
        collator = TokenizingCollator(tokenizer, data_args.max_seq_length, training_args.mask_duplicates, by_column)
        return TrainingData(corpus, collator)
    with training_args.main_process_first(desc="tokenisation"):
        tokenized = tokenize_training_data(
            corpus,
            tokenizer,
            data_args.max_seq_length,
            data_args.preprocessing_num_workers,
            text_hashes=training_args.mask_duplicates,
            prompts=by_column,
        )
    return TrainingData(tokenized, training_collator(tokenized, tokenizer))


def check_one_batch(rows: int, training_args: MixCSETrainingArguments) -> None:
    """Refuse data that yields no training step: batches are full-size (``dataloader_drop_last``), and a
    contrastive batch needs at least 2 rows either way."""
    batch = training_args.per_device_train_batch_size * training_args.world_size
    needed = batch if training_args.dataloader_drop_last else 2 * training_args.world_size
    if rows < needed:
        raise UsageError(
            f"the training data has {rows} row(s), fewer than one batch of {needed}: nothing would be "
            f"trained; add data or lower per_device_train_batch_size (>= 2)"
        )


def check_loss_fits_data(columns: list[str], training_args: MixCSETrainingArguments) -> None:
    """The hard-negative options need triplets: refuse them on other data rather than ignore them."""
    if len(columns) == 3:
        return
    for name in HARD_NEGATIVE_OPTIONS:
        if getattr(training_args, name):
            raise UsageError(
                f"{name} needs triplets (anchor, positive, hard negative), but the training data has the columns "
                f"{columns}; unset {name} or train on triplets (text_columns ANCHOR POSITIVE NEGATIVE)"
            )


def card_for_run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixCSETrainingArguments,
    text_columns: int,
    dropout: TrainingDropout | None = None,
    prompts: Prompts | None = None,
) -> ModelCardInfo:
    """The model card of this run before it measured anything: the loss's own options and the run's settings
    (with a training dropout other than the shipped one, that dropout; the prompts, if any)."""
    train_data = os.path.basename(data_args.train_file) if data_args.train_file else data_args.dataset_name
    settings: dict[str, object] = {
        "pooler_type (training)": training_args.pooler_type,
        "mlp_only_train": training_args.mlp_only_train,
        "batch size (global)": training_args.global_batch_size,
        "learning_rate": training_args.learning_rate,
        "max_seq_length": data_args.max_seq_length,
        "train data": train_data,
        "seed": training_args.seed,
        "precision": training_args.precision,
    }
    if training_args.bidirectional:
        settings["bidirectional"] = "yes: is_causal false in config.json, read by every loader"
    if dropout is not None and dropout.changed:
        settings["dropout (training only)"] = ", ".join(f"{key} {value:g}" for key, value in dropout.changed.items())
    if prompts:
        settings["prompts"] = ", ".join(f"{column}: {prompt!r}" for column, prompt in prompts.by_column.items())
        settings["include_prompt"] = prompts.include_prompt
    if training_args.max_steps <= 0:  # else max_steps sets the length; epochs read are not an input
        settings["epochs"] = training_args.num_train_epochs
    lora = None
    if model_args.use_lora and not model_args.merge_lora:
        lora = {
            "r": model_args.lora_r,
            "alpha": model_args.lora_alpha,
            "dropout": model_args.lora_dropout,
            "target_modules": model_args.lora_target_modules or "architecture default",
        }
    return ModelCardInfo(
        model_name=training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=public_model_name(model_args.model_name_or_path),
        pooler=inference_pooler(training_args.pooler_type, training_args.mlp_only_train),
        recipe=training_recipe(training_args.mixcse_loss().options(), text_columns, settings),
        train_data=train_data,
        sts_source="senteval" if data_args.senteval_dir else "hub",
        lora=lora,
        versions=stack_versions(),
        **prompt_card_fields(prompts),
    )


def prompt_card_fields(prompts: Prompts | None) -> dict[str, object]:
    """The card's fields of the prompts a run trains with (none: the card's defaults)."""
    if not prompts:
        return {}
    return {
        "prompts": prompts.by_column,
        "default_prompt_name": prompts.default_name,
        "include_prompt": prompts.include_prompt,
    }
