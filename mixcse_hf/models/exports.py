"""The files a checkpoint can be served from besides its own weights, and the one rule that serves them.

Layout and names are sentence-transformers' (``SentenceTransformer(path, backend="onnx", model_kwargs={"file_name":
...})`` reads them): ``onnx/model.onnx`` (float32), ``onnx/model_quint8_avx2.onnx`` (int8) and
``openvino/openvino_model.xml`` (+ ``.bin``). Each backend folder holds :data:`EXPORT_RECORD`: per exported file,
the sha256 of the ``model.safetensors`` it was exported from, and the STS-B test Spearman measured on it when the
export was asked to. :func:`check_fresh` is the one rule that serves a file: a file without an entry, or exported
from other weights (the model was trained on since), is refused in one line that says how to export it again.

Light on purpose (no torch): the command-line tools read the backend names from here before they load anything.
:mod:`mixcse_hf.models.backends` writes and runs the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from mixcse_hf.errors import UsageError
from mixcse_hf.output_files import write_json_atomically

WEIGHTS_FILE = "model.safetensors"
"""The weights an export is made from, and whose hash it records."""
EXPORT_RECORD = "mixcse_export.json"
"""In each backend folder: exported file name -> ``{"weights_sha256": ..., "stsb_test_spearman": ...}``."""


@dataclass(frozen=True)
class Backend:
    """A way of running the encoder: its folder in the model directory, the file it loads by default, the module
    it imports and the extra that installs that module (all ``None`` for torch, which runs the checkpoint itself)."""

    name: str
    folder: str | None = None
    default_file: str | None = None
    module: str | None = None
    extra: str | None = None
    graph_extension: str | None = None


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("torch"),
        Backend("onnx", "onnx", "model.onnx", "onnxruntime", "onnx", ".onnx"),
        Backend("openvino", "openvino", "openvino_model.xml", "openvino", "openvino", ".xml"),
    )
}
"""The ``--backend`` choices."""
BACKEND_NAMES = tuple(BACKENDS)
EXPORT_BACKENDS = tuple(name for name, backend in BACKENDS.items() if backend.folder)


@dataclass(frozen=True)
class Export:
    """One file that ``mixcse-export`` writes: its backend, its name there, the flag that asks for it, and how the
    model card names it."""

    backend: str
    file_name: str
    flag: str | None
    description: str

    @property
    def path(self) -> str:
        """Its path in the model folder, as the Hub and sentence-transformers name it."""
        return f"{BACKENDS[self.backend].folder}/{self.file_name}"


INT8_FILE = "model_quint8_avx2.onnx"
"""sentence-transformers' name for its ``avx2`` dynamic int8 configuration: uint8 weights (symmetric, per channel)
and activations. It is the CPU-neutral choice: any x86-64 CPU with AVX2 runs it without the saturation of
int8 x uint8 products that the ``avx512``/``avx512_vnni`` configurations risk on CPUs without VNNI."""
INT8_VNNI_FILE = "model_qint8_avx512_vnni.onnx"
"""sentence-transformers' name for its ``avx512_vnni`` configuration: int8 weights, whose int8 x uint8 products
AVX512-VNNI (and AMX) CPUs run natively; opt-in, as it is meant for those CPUs."""
EXPORTS: dict[str, Export] = {
    "onnx": Export("onnx", "model.onnx", None, "ONNX, float32"),
    "int8": Export("onnx", INT8_FILE, "--int8", "ONNX, int8 (dynamic quantization)"),
    "int8_vnni": Export(
        "onnx", INT8_VNNI_FILE, "--int8_vnni", "ONNX, int8 for AVX512-VNNI CPUs (dynamic quantization)"
    ),
    "openvino": Export("openvino", "openvino_model.xml", "--openvino", "OpenVINO IR, float32"),
}
"""What can be exported, by kind; ``onnx`` always is (the other two are made from it)."""


def weights_fingerprint(model_dir: str) -> str:
    """sha256 of ``model_dir``'s :data:`WEIGHTS_FILE`."""
    digest = hashlib.sha256()
    with open(os.path.join(model_dir, WEIGHTS_FILE), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(model_dir: str, backend: str) -> str:
    return os.path.join(model_dir, BACKENDS[backend].folder or "", EXPORT_RECORD)


def read_export_record(model_dir: str, backend: str) -> dict[str, dict[str, Any]]:
    """The :data:`EXPORT_RECORD` of ``backend``'s folder; empty when there is none."""
    path = record_path(model_dir, backend)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def record_export(model_dir: str, export: Export, fingerprint: str, stsb_test_spearman: float | None) -> None:
    """Set ``export``'s entry in its folder's :data:`EXPORT_RECORD`: the hash of the weights it was made from, and
    its STS-B test Spearman x100 when measured."""
    record = read_export_record(model_dir, export.backend)
    entry: dict[str, Any] = {"weights_sha256": fingerprint}
    if stsb_test_spearman is not None:
        entry["stsb_test_spearman"] = round(stsb_test_spearman, 2)
    record[export.file_name] = entry
    write_json_atomically(record_path(model_dir, export.backend), dict(sorted(record.items())), indent=2)


def export_command_for(model_dir: str, backend: str, file_name: str) -> str:
    """The ``mixcse-export`` command that writes ``file_name`` of ``backend`` for ``model_dir``."""
    flags = [e.flag for e in EXPORTS.values() if e.backend == backend and e.file_name == file_name and e.flag]
    return " ".join(["mixcse-export", model_dir, *flags])


def check_fresh(model_dir: str, backend: str, file_name: str) -> None:
    """The one rule for serving an exported file: it exists, has an entry in its :data:`EXPORT_RECORD`, and that
    entry's hash is the one of ``model_dir``'s weights now; otherwise a one-line :class:`UsageError` that says how
    to export it again."""
    folder = BACKENDS[backend].folder or ""
    where = os.path.join(model_dir, folder, file_name)
    again = f"export it again: {export_command_for(model_dir, backend, file_name)}"
    if not os.path.isfile(where):
        raise UsageError(f"{where} does not exist; {again.replace(' again', '')}")
    entry = read_export_record(model_dir, backend).get(file_name)
    if entry is None:
        raise UsageError(f"{where} has no weights fingerprint in {folder}/{EXPORT_RECORD}, so it may be stale; {again}")
    if entry.get("weights_sha256") != weights_fingerprint(model_dir):
        raise UsageError(
            f"{where} is stale: it was exported from other weights than {WEIGHTS_FILE} holds now (trained on since); "
            f"{again}"
        )


def graph_files(model_dir: str) -> list[tuple[str, str]]:
    """(backend, file name) of every graph file in ``model_dir``'s backend folders, whoever wrote it."""
    found = []
    for name in EXPORT_BACKENDS:
        backend = BACKENDS[name]
        folder = os.path.join(model_dir, backend.folder or "")
        if os.path.isdir(folder):
            found += [(name, entry) for entry in sorted(os.listdir(folder)) if entry.endswith(backend.graph_extension)]
    return found


def check_exports(model_dir: str) -> None:
    """Every graph file in ``model_dir`` passes :func:`check_fresh` (what a push checks before it uploads them)."""
    for backend, file_name in graph_files(model_dir):
        check_fresh(model_dir, backend, file_name)


def exported_files(model_dir: str) -> dict[str, dict[str, Any]]:
    """The fresh files of :data:`EXPORTS` in ``model_dir`` by path (e.g. ``onnx/model.onnx``), each with its
    description and record entry: what the model card lists."""
    if not os.path.isfile(os.path.join(model_dir, WEIGHTS_FILE)):
        return {}
    current = weights_fingerprint(model_dir)
    found = {}
    for export in EXPORTS.values():
        entry = read_export_record(model_dir, export.backend).get(export.file_name)
        fresh = entry is not None and entry.get("weights_sha256") == current
        if fresh and os.path.isfile(os.path.join(model_dir, export.path)):
            found[export.path] = {"description": export.description, **entry}
    return found


def exported_file_name(backend: Backend, file_name: str | None) -> str:
    """``--file_name`` as a name inside the backend's folder (``onnx/model.onnx`` and ``model.onnx`` alike);
    unset: the backend's default."""
    if file_name is None:
        return backend.default_file or ""
    prefix = f"{backend.folder}/"
    return file_name[len(prefix) :] if file_name.startswith(prefix) else file_name
