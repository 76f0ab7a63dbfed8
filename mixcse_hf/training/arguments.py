"""The arguments' fields and help, importable without torch or transformers (``run_mixcse.py --help`` reads them).

:mod:`mixcse_hf.training.training_args` validates them and joins :class:`MixCSEOptions` to ``TrainingArguments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixcse_hf.errors import UsageError

LOSS_OPTIONS = (
    "temp",
    "mix_lambda",
    "mixed_negatives",
    "mixed_negative_mask",
    "mix_strategy",
    "lambda_schedule",
    "mix_lambda_end",
    "mix_sides",
    "hard_negative_weight",
    "mixed_hard_negative",
    "mask_duplicates",
)
"""The fields of :class:`MixCSEOptions` that configure the loss (a run's identity records each)."""


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Encoder to start from: a local HF model directory or a Hub id (required)."},
    )
    reinit_mlp: bool = field(
        default=True,
        metadata={
            "help": "With pooler_type cls: re-initialise the MLP randomly, as the reference does; false keeps the "
            "checkpoint's (to continue a mixcse_hf model)."
        },
    )

    use_lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (PEFT) instead of all weights; the pooling MLP is trained in full."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt; default per architecture (BERT/RoBERTa: query value; MPNet: q v)."},
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "Save the final model with the adapters merged into the weights (else adapter-only)."},
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise UsageError("model_name_or_path is required: set it in the config or pass --model_name_or_path")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data. A text file, one sentence per line (e.g. wiki1m_for_simcse.txt): unsupervised. "
            "A .csv/.tsv/.json/.jsonl/.parquet table (e.g. nli_for_simcse.csv): columns as text_columns says. "
            "Blank lines and rows with a blank field are skipped."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of train_file: a datasets Hub id or local data directory (e.g. "
            "sentence-transformers/all-nli with dataset_config_name triplet)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config name of dataset_name."})
    dataset_split: str = field(default="train", metadata={"help": "Split of dataset_name to train on."})
    text_column: str = field(
        default="text",
        metadata={"help": "One-sentence data (unsupervised): its column. Pairs and triplets: text_columns."},
    )
    text_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Pairs and triplets: the columns, in order: ANCHOR POSITIVE [HARD_NEGATIVE] (one column: as "
            "text_column). Unset: sent0 sent1 [hard_neg] (SimCSE's NLI file), anchor positive [negative] "
            "(sentence-transformers) or text_column, whichever the data has."
        },
    )
    max_seq_length: int = field(
        default=32, metadata={"help": "Truncate training sentences to this many tokens (the recipe uses 32)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N non-blank sentences only (quick runs, debugging)."}
    )
    senteval_dir: str | None = field(
        default=None,
        metadata={
            "help": "SentEval-layout data directory holding STS/STSBenchmark/sts-{dev,test}.csv for evaluation. "
            "Unset: MTEB's public Hub copy mteb/stsbenchmark-sts (needs network)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenising the corpus (datasets.map num_proc); unset: one."}
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read and tokenise the training data as training goes (in dataloader_num_workers workers) "
            "instead of tokenising it all first: for corpora of any size. Needs max_steps (the stream has no "
            "length); epochs follow each other, each shuffled with shuffle_buffer_size."
        },
    )
    shuffle_buffer_size: int = field(
        default=10_000,
        metadata={"help": "With streaming: rows held for shuffling (memory grows with it); 0 keeps the file order."},
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 2:
            raise UsageError(
                f"max_seq_length must be >= 2 (room for [CLS] and [SEP]), got {self.max_seq_length}; the recipe uses 32"
            )
        if (self.train_file is None) == (self.dataset_name is None):
            raise UsageError("set exactly one of train_file (a text file) or dataset_name (a datasets dataset)")
        if self.shuffle_buffer_size < 0:
            raise UsageError(f"shuffle_buffer_size must be >= 0 (0: no shuffling), got {self.shuffle_buffer_size}")
        if self.streaming and self.preprocessing_num_workers:
            raise UsageError(
                "preprocessing_num_workers tokenises the whole corpus first; with streaming, tokenisation runs in "
                "the dataloader's workers: pass --dataloader_num_workers N instead"
            )


@dataclass
class MixCSEOptions:
    """The fields :class:`~mixcse_hf.training.training_args.MixCSETrainingArguments` adds to (or changes in)
    ``transformers.TrainingArguments``; validated there."""

    temp: float = field(
        default=0.05, metadata={"help": "Softmax temperature tau of the contrastive loss (finite, > 0)."}
    )
    mix_lambda: float | None = field(
        default=0.2,
        metadata={
            "help": "Weight of the positive in each mixed negative, in (0, 1); 0 or null trains plain SimCSE. "
            "Small values keep the mixed negative farther from the anchor than the positive."
        },
    )
    mixed_negatives: str = field(
        default="reference",
        metadata={
            "help": "reference: the released code's N x 3N logits (both mixed blocks); paired: one mixed negative "
            "per anchor, as the paper describes; none: no mixed negatives of positives (triplets with "
            "mixed_hard_negative only; mix_strategy, mix_sides and mixed_negative_mask then have no effect).",
        },
    )
    mixed_negative_mask: str = field(
        default="zero",
        metadata={
            "help": "Value of the masked self-mix entries: zero (reference; still in the softmax) or neg_inf (-inf).",
        },
    )
    mix_strategy: str = field(
        default="roll",
        metadata={
            "help": "Negative mixed with each positive: roll (next in batch, reference), random, or hardest (most "
            "similar to the anchor, chosen without gradient)."
        },
    )
    lambda_schedule: str = field(
        default="constant",
        metadata={
            "help": "constant (reference); linear or cosine from mix_lambda to mix_lambda_end over training; "
            "adaptive: per pair mix_lambda * (1 - cos(anchor, negative)) / 2."
        },
    )
    mix_lambda_end: float | None = field(
        default=None, metadata={"help": "Final lambda of the linear and cosine schedules, in (0, 1)."}
    )
    mix_sides: str = field(
        default="both",
        metadata={"help": "Mixed-negative blocks: both (reference: anchor and positive sides) or anchor only."},
    )
    hard_negative_weight: float = field(
        default=0.0,
        metadata={
            "help": "Triplets: log-weight added to each anchor's own hard-negative logit, as SimCSE's "
            "hard_negative_weight (0 in its recipe)."
        },
    )
    mixed_hard_negative: bool = field(
        default=False,
        metadata={
            "help": "Triplets: add mixed hard negatives mix_lambda * positive + (1 - mix_lambda) * hard negative "
            "(each positive with its own hard negative, detached: mix_strategy does not apply), one column block."
        },
    )
    mask_duplicates: bool = field(
        default=True,
        metadata={
            "help": "Remove false negatives: in-batch candidates whose text (NFKC, stripped) is the row's anchor or "
            "positive text leave the softmax, and so does every mixed negative whose 1 - mix_lambda part is one. "
            "Logs masked_duplicates. false: the reference loss, bit for bit."
        },
    )
    log_gradient_signal: bool = field(
        default=True,
        metadata={
            "help": "Log grad_anchor_norm (norm of dLoss/d anchor embeddings) and grad_mixed_share (its share from "
            "the mixed negatives) each logging step; costs two small backward passes through the loss only."
        },
    )
    start_evaluation: bool = field(
        default=True,
        metadata={
            "help": "With do_eval: score the start model on STS-B dev and test before training (the summary's "
            "start row, the plot's step 0), cached in MIXCSE_CACHE_DIR (default ~/.cache/mixcse_hf); a resumed run "
            "reuses its recorded start scores."
        },
    )
    pooler_type: str = field(
        default="auto",
        metadata={
            "help": "Sentence embedding. auto: the model's own, else its family's (docs/backbones.md); cls: [CLS] "
            "through the MLP (the encoder's pooler dense + tanh), as SimCSE/MixCSE train; cls_before_pooler: raw "
            "[CLS] of the last layer; avg: mean of the last layer over real tokens; avg_first_last: mean of the "
            "embedding layer and the last layer; avg_top2: mean of the last two layers; last: the last real token "
            "(EOS of decoders)."
        },
    )
    bidirectional: bool = field(
        default=False,
        metadata={"help": "Decoders: attend both ways (is_causal false, saved in config.json for every loader)."},
    )
    mlp_only_train: bool = field(
        default=False,
        metadata={
            "help": "With pooler_type cls: train through the MLP but evaluate and export [CLS] without it "
            "(the unsupervised SimCSE recipe)."
        },
    )
    train_dropout: str = field(
        default="auto",
        metadata={
            "help": "Training-only dropout: auto (the model's; 0.1 where it has none and training is unsupervised) "
            "or a probability."
        },
    )
    prompts: list[str] | None = field(
        default=None,
        metadata={"help": 'A prompt per text column ("": none), saved as sentence-transformers prompts.'},
    )
    include_prompt: bool = field(
        default=True, metadata={"help": "false: pool without the prompt tokens (sentence-transformers' option)."}
    )
    gradcache_mini_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "GradCache: embed and backpropagate the batch in mini-batches of this many sentences, so memory "
            "grows with it rather than with the batch size (same gradients, about one extra forward pass)."
        },
    )
    padding_free: str = field(
        default="auto",
        metadata={
            "help": "Pack each step's sentences into rows without pad tokens: the same embeddings for less compute. "
            "auto: where the model's family packs (docs/backbones.md); true or false."
        },
    )
    pack_length: int | None = field(
        default=None,
        metadata={
            "help": "With padding_free: tokens per packed row (>= max_seq_length); unset: twice the batch's longest "
            "sentence. Attention cost grows with it."
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto: bf16 where the hardware has it natively (a CUDA GPU with bf16; a CPU with AMX or "
            "AVX512-BF16), fp16 with loss scaling on other CUDA GPUs, float32 elsewhere; or bf16, fp16, fp32. "
            "The run logs what it chose and why; a resumed run keeps its precision. Use it, not bf16/fp16."
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "The Trainer's flag (existing configs): given (true or false), it decides instead of precision."
        },
    )
    fp16: bool | None = field(
        default=None,
        metadata={
            "help": "The Trainer's flag (existing configs): given (true or false), it decides instead of precision."
        },
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={
            "help": "Drop the last incomplete batch: contrastive batches need >= 2 sentences, and across processes "
            "equal sizes for the all-gather of negatives."
        },
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP: every trained parameter is used each step (an unused pooler is frozen)."},
    )
    ddp_broadcast_buffers: bool | None = field(
        default=False, metadata={"help": "DDP: do not broadcast buffers (position ids) every forward."}
    )
    do_train: bool = field(
        default=True,
        metadata={"help": "Train (run_mixcse.py's job; set false with do_eval true to only evaluate a model)."},
    )
    do_eval: bool | None = field(
        default=None,
        metadata={
            "help": "The one switch for evaluation. false: none, whatever eval_strategy says (no start or final "
            "scoring, none during training; the last model is kept). true: STS-B dev and test before and after "
            "training, and during it as eval_strategy says. Unset: true when eval_strategy is set."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Keep every dataset column: the loss gets each named text column (anchor, positive…), which "
            "the encoder's forward signature does not name."
        },
    )
    resume_changed_settings: list[str] | None = field(
        default=None,
        metadata={
            "help": "Settings allowed to differ from the run being resumed, by name (learning_rate, max_steps, "
            "num_train_epochs, warmup, max_grad_norm, the MixCSE loss options, precision between bf16 and fp32, "
            "train_file_content: a train_file rewritten in place); each takes effect from the resumed step on. "
            "Any other difference is refused: start a new run for it."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in a non-empty output_dir: the old run's checkpoints are deleted and its "
            "files of the same name replaced."
        },
    )
