"""Encoding on the CPU without torch: ONNX Runtime and OpenVINO graphs exported beside a checkpoint.

Each graph is the Transformer module alone, as optimum's feature-extraction export is (inputs the tokenizer's
``input_ids``, ``attention_mask``, ``token_type_ids``; output ``last_hidden_state``), written by torch's ONNX exporter;
int8 is ONNX Runtime's dynamic quantization of it, OpenVINO's IR its converter's. The pooler recorded with the model
is applied after the graph, through the pooler registry (:data:`mixcse_hf.models.pooling.POOLERS`), with the MLP of
the ``2_Dense`` module where the pooler uses it, as sentence-transformers applies its Pooling and Dense modules after
its ONNX backend. So a pooler exports when it has a sentence-transformers equivalent, and then gives the torch
model's embedding. Names, the layout and the freshness rule are :mod:`mixcse_hf.models.exports`'.

The runtimes are optional (``pip install "mixcse_hf[onnx]"``, ``"mixcse_hf[openvino]"``) and imported only inside
the functions that use them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError
from mixcse_hf.models.encoder import (
    ADAPTER_FILES,
    SentenceEncoder,
    default_pooler,
    encode_in_batches,
    is_adapter_folder,
    load_encoder,
    resolve_model_path,
)
from mixcse_hf.models.exports import (
    BACKENDS,
    EXPORT_BACKENDS,
    EXPORTS,
    WEIGHTS_FILE,
    Backend,
    check_fresh,
    exported_file_name,
)
from mixcse_hf.models.pooling import POOLERS, get_pooler, pool
from mixcse_hf.models.sentence_transformers_format import (
    sentence_transformers_max_seq_length,
    sentence_transformers_prompts,
)

DENSE_WEIGHTS = os.path.join("2_Dense", "model.safetensors")
"""The MLP (dense + tanh) of a pooler that uses it, as the sentence-transformers files hold it."""
ONNX_OPSET = 17


def exportable_poolers() -> list[str]:
    """The poolers whose embedding an export reproduces: those with a sentence-transformers equivalent."""
    return [name for name, pooler in POOLERS.items() if pooler.sentence_transformers_mode]


def check_backend_installed(backend: Backend) -> None:
    if backend.module and importlib.util.find_spec(backend.module) is None:
        raise UsageError(
            f"--backend {backend.name} needs the {backend.module} package; install it: "
            f'pip install "mixcse_hf[{backend.extra}]"'
        )


def check_exportable(model_dir: str) -> str:
    """``model_dir`` can be exported: a local full checkpoint (``config.json`` + :data:`WEIGHTS_FILE`) whose recorded
    pooler has a sentence-transformers equivalent; returns that pooler. Otherwise a one-line :class:`UsageError`."""
    if not os.path.isdir(model_dir):
        raise UsageError(f"{model_dir!r} is not a model directory; exported files live beside a saved checkpoint")
    if is_adapter_folder(model_dir):
        raise UsageError(
            f"{model_dir!r} is a LoRA adapter ({' + '.join(ADAPTER_FILES)}); export a merged checkpoint: train with "
            "--merge_lora true, or merge_and_unload() and save it"
        )
    missing = [name for name in ("config.json", WEIGHTS_FILE) if not os.path.isfile(os.path.join(model_dir, name))]
    if missing:
        raise UsageError(f"{model_dir!r} holds no {' or '.join(missing)}; pass a saved model directory")
    pooler_type = default_pooler(AutoConfig.from_pretrained(model_dir), model_dir)
    if get_pooler(pooler_type).sentence_transformers_mode is None:
        raise UsageError(
            f"{model_dir!r} pools with {pooler_type!r}, which has no sentence-transformers equivalent, so no exported "
            f"graph reproduces it; poolers that export: {', '.join(exportable_poolers())}"
        )
    return pooler_type


def torch_only_options(dtype: str, device: str | None, padding_free: bool = False) -> dict[str, bool]:
    """The commands' options that only the torch backend runs, and whether each was set away from its default."""
    return {"--dtype": dtype != "float32", "--device": device not in (None, "cpu"), "--padding_free": padding_free}


def check_backend_options(
    model: str, backend_name: str, file_name: str | None, pooler_type: str | None, torch_only: dict[str, bool]
) -> None:
    """Everything about ``--backend`` and ``--file_name`` that can be checked before anything loads: the runtime is
    installed, the folder can be served by it with its own pooler (``--pooler`` may only repeat it), the file
    exists and is fresh (:func:`check_fresh`), and no torch-only option (``torch_only``: flag -> whether it was set)
    is set; a one-line :class:`UsageError` otherwise."""
    backend = BACKENDS[backend_name]
    if backend.folder is None:
        if file_name is not None:
            raise UsageError(
                f"--file_name picks an exported file: use it with --backend {' or '.join(EXPORT_BACKENDS)}"
            )
        return
    set_options = [flag for flag, is_set in torch_only.items() if is_set]
    if set_options:
        raise UsageError(f"{', '.join(set_options)}: for --backend torch only; drop it for --backend {backend_name}")
    check_backend_installed(backend)
    model_dir = resolve_model_path(model)
    recorded = check_exportable(model_dir)
    if pooler_type is not None and pooler_type != recorded:
        raise UsageError(
            f"--pooler {pooler_type}: the exported graph of {model!r} is served with its recorded pooler {recorded!r}; "
            "drop --pooler, or use --backend torch"
        )
    check_fresh(model_dir, backend_name, exported_file_name(backend, file_name))


class OnnxRuntimeGraph:
    """``features -> last_hidden_state`` through an ONNX Runtime session on the CPU."""

    def __init__(self, path: str) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inputs = [item.name for item in self.session.get_inputs()]

    def __call__(self, features: dict[str, Any]) -> Any:
        return self.session.run(["last_hidden_state"], {name: features[name] for name in self.inputs})[0]


class OpenVinoGraph:
    """``features -> last_hidden_state`` through an OpenVINO model compiled for the CPU in float32: OpenVINO's own
    default precision is bfloat16 on CPUs with AMX or AVX512-BF16, which would make the embedding depend on the CPU."""

    def __init__(self, path: str) -> None:
        import openvino

        self.model = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.inputs = [port.any_name for port in self.model.inputs]

    def __call__(self, features: dict[str, Any]) -> Any:
        return self.model({name: features[name] for name in self.inputs})[self.model.output("last_hidden_state")]


GRAPHS: dict[str, Callable[[str], Callable[[dict[str, Any]], Any]]] = {
    "onnx": OnnxRuntimeGraph,
    "openvino": OpenVinoGraph,
}


class ExportedEncoder:
    """The ``encode`` of :class:`mixcse_hf.models.encoder.SentenceEncoder` over an exported graph: tokenised as the
    torch model is (same tokenizer and ``max_seq_length``), the recorded pooler applied to ``last_hidden_state``.

    Build it with :func:`load_exported_encoder`, which checks the file first."""

    def __init__(
        self,
        graph: Callable[[dict[str, Any]], Any],
        tokenizer: PreTrainedTokenizerBase,
        pooler_type: str,
        dimension: int,
        max_seq_length: int | None,
        dense: nn.Linear | None,
    ) -> None:
        self.graph = graph
        self.tokenizer = tokenizer
        self.pooler_type = pooler_type
        self.dimension = dimension
        self.max_seq_length = max_seq_length
        self.dense = dense

    def embed_batch(self, sentences: Sequence[str]) -> torch.Tensor:
        features = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        hidden = torch.from_numpy(self.graph(dict(features))).float()
        outputs = {"last_hidden_state": hidden}
        if self.dense is not None:
            outputs["pooler_output"] = torch.tanh(self.dense(hidden[:, 0]))
        return pool(outputs, torch.from_numpy(features["attention_mask"]), self.pooler_type)

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
        """As :meth:`mixcse_hf.models.encoder.SentenceEncoder.encode`."""
        return encode_in_batches(
            sentences, self.embed_batch, self.dimension, batch_size, show_progress_bar, normalize, on_batch, desc
        )


def mlp_of(model_dir: str) -> nn.Linear:
    """The pooler's MLP dense layer from the sentence-transformers ``2_Dense`` module of ``model_dir``."""
    weights = load_file(os.path.join(model_dir, DENSE_WEIGHTS))
    dense = nn.Linear(weights["linear.weight"].shape[1], weights["linear.weight"].shape[0])
    dense.load_state_dict({"weight": weights["linear.weight"], "bias": weights["linear.bias"]})
    return dense


def load_exported_encoder(
    model: str, backend_name: str, file_name: str | None = None, max_seq_length: int | None = None
) -> ExportedEncoder:
    """An :class:`ExportedEncoder` for ``model``'s exported file (``file_name`` ``None``: the backend's default), once
    :func:`check_backend_options` passes; ``max_seq_length`` ``None``: the sentence-transformers folder's own."""
    check_backend_options(model, backend_name, file_name, None, {})
    backend = BACKENDS[backend_name]
    model_dir = resolve_model_path(model)
    config = AutoConfig.from_pretrained(model_dir)
    pooler_type = default_pooler(config, model_dir)
    graph = GRAPHS[backend_name](os.path.join(model_dir, backend.folder or "", exported_file_name(backend, file_name)))
    return ExportedEncoder(
        graph,
        AutoTokenizer.from_pretrained(model_dir),
        pooler_type,
        config.hidden_size,
        max_seq_length or sentence_transformers_max_seq_length(model_dir),
        mlp_of(model_dir) if get_pooler(pooler_type).uses_mlp else None,
    )


Encoder = SentenceEncoder | ExportedEncoder
"""What the commands encode with: both have ``encode(...)``, ``pooler_type`` and ``dimension``."""


def load_backend_encoder(
    model: str,
    backend: str = "torch",
    file_name: str | None = None,
    pooler_type: str | None = None,
    dtype: str = "float32",
    device: str | None = None,
    max_seq_length: int | None = None,
    padding_free: bool = False,
    prompt_name: str | None = None,
) -> Encoder:
    """The commands' one way to an encoder: :func:`mixcse_hf.models.encoder.load_encoder` for torch, else
    :func:`load_exported_encoder` (the options were checked by :func:`check_backend_options`). The exported
    encoders apply no prompt: a model trained with prompts is refused there in one line."""
    if BACKENDS[backend].folder is None:
        return load_encoder(model, pooler_type, dtype, device, max_seq_length, padding_free, prompt_name)
    prompts = sentence_transformers_prompts(resolve_model_path(model))[0]
    if prompts or prompt_name is not None:
        raise UsageError(
            f"{model!r} was trained with prompts ({', '.join(prompts) or prompt_name}), which --backend {backend} "
            "does not apply yet; use --backend torch"
        )
    return load_exported_encoder(model, backend, file_name, max_seq_length)


class LastHiddenState(nn.Module):
    """The backbone with positional inputs named as the tokenizer names them and ``last_hidden_state`` as its one
    output: what torch's exporter traces, and what optimum's feature-extraction graphs look like."""

    def __init__(self, model: nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).last_hidden_state


def temporary_beside(path: str) -> str:
    """A hidden name beside ``path`` with its extension (OpenVINO names the ``.bin`` after the ``.xml``)."""
    directory, name = os.path.split(path)
    stem, extension = os.path.splitext(name)
    return os.path.join(directory, f".{stem}.{os.getpid()}.partial{extension}")


def write_onnx(model_dir: str, target: str) -> None:
    """torch's ONNX exporter (TorchScript tracing, as optimum uses it) over a freshly loaded backbone: tracing may
    change the module it traces, so the caller's model is never passed in."""
    model = AutoModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    example = tokenizer(["an example sentence to trace", "two words"], padding=True, return_tensors="pt")
    names = list(example)
    axes = {0: "batch_size", 1: "sequence_length"}
    # The tracer warns about shape checks in transformers' mask code; the tests check the graph on other shapes.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            LastHiddenState(model, names),
            tuple(example[name] for name in names),
            target,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in [*names, "last_hidden_state"]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


INT8_WEIGHTS = {"int8": "QUInt8", "int8_vnni": "QInt8"}
"""The weight type of each int8 export: sentence-transformers' ``avx2`` and ``avx512_vnni`` configurations, which
share the rest (per channel, symmetric weights, uint8 activations)."""


def write_int8(kind: str, source: str, target: str) -> None:
    """ONNX Runtime's dynamic quantization with the settings of sentence-transformers' configuration for ``kind``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = QuantType[INT8_WEIGHTS[kind]]
    quantize_dynamic(source, target, per_channel=True, weight_type=weights, extra_options={"WeightSymmetric": True})


def write_openvino(source: str, target: str) -> None:
    """OpenVINO's converter over the float32 ONNX graph, saved as IR with float32 weights."""
    import openvino

    openvino.save_model(openvino.convert_model(source), target, compress_to_fp16=False)


WRITERS: dict[str, Callable[[str, str], None]] = {
    **{kind: functools.partial(write_int8, kind) for kind in INT8_WEIGHTS},
    "openvino": write_openvino,
}
"""How each export other than ``onnx`` is made from ``onnx/model.onnx``."""


def export_path(model_dir: str, kind: str) -> str:
    return os.path.join(model_dir, EXPORTS[kind].path)


def write_export(model_dir: str, kind: str) -> str:
    """Write the file of ``kind`` (a key of :data:`EXPORTS`) into ``model_dir`` under a temporary name, renamed once
    complete (OpenVINO's ``.bin`` beside it); returns its path. Its record entry is :func:`record_export`'s."""
    target = export_path(model_dir, kind)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = temporary_beside(target)
    if kind == "onnx":
        write_onnx(model_dir, temporary)
    else:
        WRITERS[kind](export_path(model_dir, "onnx"), temporary)
    if kind == "openvino":  # the IR is two files: the weights are named after the .xml
        os.replace(os.path.splitext(temporary)[0] + ".bin", os.path.splitext(target)[0] + ".bin")
    os.replace(temporary, target)
    return target
