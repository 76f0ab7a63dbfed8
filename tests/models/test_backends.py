"""Exported graphs (ONNX float32 and int8, OpenVINO) give the torch model's embeddings for every pooler that exports,
load where sentence-transformers looks for them, and are never served once the weights changed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.hub.export import add_auto_map, export_checkpoint
from mixcse_hf.models.encoder import load_backbone, load_encoder, reinit_mlp
from mixcse_hf.models.exports import (
    EXPORTS,
    INT8_FILE,
    INT8_VNNI_FILE,
    check_exports,
    exported_files,
    record_export,
    weights_fingerprint,
)
from mixcse_hf.models.pooling import POOLERS
from tests.conftest import REPO_ROOT, SENTENCES, minilm_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason='needs the onnx extra: pip install "mixcse_hf[onnx]"'
)
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason='needs the openvino extra: pip install "mixcse_hf[openvino]"'
)

EXPORTABLE = [name for name, pooler in POOLERS.items() if pooler.sentence_transformers_mode]
NOT_EXPORTABLE = [name for name in POOLERS if name not in EXPORTABLE]
TORCH_TOLERANCE = 1e-4
"""Largest difference of a float32 graph's unit vectors from the torch model's."""
INT8_MIN_COSINE = {"tiny": 0.999, "all-MiniLM-L6-v2": 0.97}
"""The int8 file's embedding against the torch model's, cosine, the lowest over the test sentences. Measured on
2026-12-06 (Intel Xeon, AVX512-VNNI/AMX): 0.99995 on the tiny random BERT (each pooler) and 0.990 on
all-MiniLM-L6-v2, for both int8 files; the bounds leave room for other CPUs' kernels and other random draws."""


def saved_checkpoint(tiny_model_dir: str, folder: Path, pooler_type: str) -> Path:
    """The tiny BERT saved as training saves a model that pools with ``pooler_type`` (a fresh MLP for a pooler
    that uses it), without training it."""
    torch.manual_seed(1)
    model, tokenizer = load_backbone(tiny_model_dir, pooler_type, mlp_only_train=False)
    if POOLERS[pooler_type].uses_mlp:
        reinit_mlp(model)
    add_auto_map(model)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    export_checkpoint(str(folder), model)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved tiny checkpoint per exportable pooler, exported to ONNX and int8 (and OpenVINO where installed)."""
    from mixcse_hf.cli.export import export_folder, requested_kinds

    root = tmp_path_factory.mktemp("exported")
    folders = {}
    for pooler_type in EXPORTABLE:
        folder = saved_checkpoint(tiny_model_dir, root / pooler_type, pooler_type)
        export_folder(
            str(folder), requested_kinds(True, importlib.util.find_spec("openvino") is not None, int8_vnni=True)
        )
        folders[pooler_type] = folder
    return folders


def encodings(folder: Path, backend: str, file_name: str | None = None) -> torch.Tensor:
    from mixcse_hf.models.backends import load_backend_encoder

    # batch_size 5: batches of different padded lengths
    return load_backend_encoder(str(folder), backend, file_name).encode(SENTENCES, batch_size=5, normalize=True)


def torch_encodings(folder: Path) -> torch.Tensor:
    return load_encoder(str(folder)).encode(SENTENCES, batch_size=5, normalize=True)


@pytest.mark.parametrize("pooler_type", EXPORTABLE)
def test_onnx_float32_equals_torch_for_each_pooler_that_exports(pooler_type: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[pooler_type]
    assert (folder / "onnx" / "model.onnx").is_file()
    difference = (encodings(folder, "onnx") - torch_encodings(folder)).abs().max().item()
    assert difference <= TORCH_TOLERANCE


@needs_openvino
@pytest.mark.parametrize("pooler_type", EXPORTABLE)
def test_openvino_equals_torch_for_each_pooler_that_exports(pooler_type: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[pooler_type]
    difference = (encodings(folder, "openvino") - torch_encodings(folder)).abs().max().item()
    assert difference <= TORCH_TOLERANCE


@needs_openvino
def test_openvino_computes_in_float32_on_every_cpu(checkpoints: dict[str, Path]) -> None:
    """OpenVINO's default is bfloat16 where the CPU has it (AMX, AVX512-BF16); the tiny model's differences stay
    under the tolerance either way, so the test above cannot see it."""
    import openvino

    from mixcse_hf.models.backends import OpenVinoGraph

    graph = OpenVinoGraph(str(checkpoints["avg"] / "openvino" / "openvino_model.xml"))
    assert graph.model.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


@pytest.mark.parametrize("int8_file", [INT8_FILE, INT8_VNNI_FILE])
@pytest.mark.parametrize("pooler_type", EXPORTABLE)
def test_int8_stays_within_its_cosine_bound(pooler_type: str, int8_file: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[pooler_type]
    int8 = encodings(folder, "onnx", int8_file)
    reference = torch_encodings(folder)
    assert (int8 * reference).sum(-1).min().item() >= INT8_MIN_COSINE["tiny"]
    assert not torch.equal(int8, encodings(folder, "onnx"))  # it is another graph than the float32 one


def test_the_mlp_pooler_applies_the_exported_dense(checkpoints: dict[str, Path]) -> None:
    """``cls`` differs from ``cls_before_pooler`` on the same graph only by the Dense: without it, the test of ``cls``
    above could not pass."""
    from mixcse_hf.models.backends import load_exported_encoder

    encoder = load_exported_encoder(str(checkpoints["cls"]), "onnx")
    assert encoder.dense is not None
    with_mlp = encoder.encode(SENTENCES)
    encoder.pooler_type, encoder.dense = POOLERS["cls"].without_mlp, None
    assert (with_mlp - encoder.encode(SENTENCES)).abs().max().item() > 1e-2


def test_the_graph_is_the_one_optimum_feature_extraction_loads(checkpoints: dict[str, Path]) -> None:
    """What sentence-transformers' ONNX backend (optimum's ORTModelForFeatureExtraction) feeds and reads: the
    tokenizer's inputs by name, ``last_hidden_state`` out, batch and length dynamic."""
    import onnxruntime

    folder = checkpoints["avg"]
    session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert {item.name for item in session.get_inputs()} == set(tokenizer("a"))
    (output,) = session.get_outputs()
    assert output.name == "last_hidden_state"
    assert output.shape[:2] == ["batch_size", "sequence_length"]


def sentence_transformers_onnx_backend() -> str | None:
    """Why ``SentenceTransformer(path, backend="onnx")`` cannot run here, or ``None`` when it can."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except Exception as err:  # optimum-onnx <= 0.1.0 fails to import on transformers 5
        return f"sentence-transformers' ONNX backend needs optimum.onnxruntime, which does not import here: {err}"
    return None


@pytest.mark.skipif(sentence_transformers_onnx_backend() is not None, reason=str(sentence_transformers_onnx_backend()))
@pytest.mark.parametrize("pooler_type", EXPORTABLE)
def test_sentence_transformers_onnx_backend_gives_the_torch_embeddings(
    pooler_type: str, checkpoints: dict[str, Path]
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = str(checkpoints[pooler_type])
    served = SentenceTransformer(folder, backend="onnx", device="cpu").encode(SENTENCES, normalize_embeddings=True)
    reference = SentenceTransformer(folder, device="cpu").encode(SENTENCES, normalize_embeddings=True)
    assert abs(served - reference).max() <= TORCH_TOLERANCE


def test_a_stale_export_is_refused_and_names_the_command(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from mixcse_hf.models.backends import check_backend_options

    folder = tmp_path / "model"
    shutil.copytree(checkpoints["cls"], folder)
    check_backend_options(str(folder), "onnx", INT8_FILE, None, {})
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01  # trained on after the export
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UsageError, match=rf"stale.*mixcse-export {folder} --int8$"):
        check_backend_options(str(folder), "onnx", INT8_FILE, None, {})
    with pytest.raises(UsageError, match="stale"):
        check_exports(str(folder))
    assert exported_files(str(folder)) == {}  # the card lists no stale file


def test_a_graph_without_a_fingerprint_is_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from mixcse_hf.models.backends import check_backend_options

    folder = tmp_path / "model"
    shutil.copytree(checkpoints["avg"], folder)
    shutil.copy(folder / "onnx" / "model.onnx", folder / "onnx" / "model_O1.onnx")  # written by another tool
    with pytest.raises(UsageError, match="no weights fingerprint"):
        check_backend_options(str(folder), "onnx", "onnx/model_O1.onnx", None, {})
    with pytest.raises(UsageError, match=r"model_O1\.onnx has no weights fingerprint"):
        check_exports(str(folder))
    record_export(str(folder), EXPORTS["onnx"], weights_fingerprint(str(folder)), None)
    check_backend_options(str(folder), "onnx", "model.onnx", None, {})


@pytest.mark.parametrize("pooler_type", NOT_EXPORTABLE)
def test_poolers_without_a_sentence_transformers_equivalent_are_refused(
    pooler_type: str, tiny_model_dir: str, tmp_path: Path
) -> None:
    from mixcse_hf.cli.export import export_folder

    folder = saved_checkpoint(tiny_model_dir, tmp_path / "model", pooler_type)
    with pytest.raises(UsageError, match=f"poolers that export: {', '.join(EXPORTABLE)}$"):
        export_folder(str(folder), ["onnx"])
    assert not (folder / "onnx").exists()


def test_options_that_cannot_work_are_refused_before_loading(checkpoints: dict[str, Path], monkeypatch) -> None:
    from mixcse_hf.models import backends

    folder = str(checkpoints["cls"])
    cases = [
        ("torch", "model.onnx", None, {}, "--file_name picks an exported file"),
        ("onnx", None, None, {"--dtype": True}, "--dtype: for --backend torch only"),
        ("onnx", None, "avg", {}, "recorded pooler 'cls'"),
        ("onnx", "model_O4.onnx", None, {}, "does not exist; export it: mixcse-export"),
    ]
    monkeypatch.setattr(backends, "AutoModel", None)  # nothing may load a model
    for backend, file_name, pooler, torch_only, message in cases:
        with pytest.raises(UsageError, match=message):
            backends.check_backend_options(folder, backend, file_name, pooler, torch_only)
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r'pip install "mixcse_hf\[openvino\]"'):
        backends.check_backend_options(folder, "openvino", None, None, {})


def test_the_core_install_gains_no_dependency() -> None:
    """setup.py's install_requires names no runtime of the exports, and the commands import none before use."""
    import ast

    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    requires = next(keyword.value for keyword in call.keywords if keyword.arg == "install_requires")
    names = {ast.literal_eval(item).split(">")[0].split("<")[0].split("=")[0] for item in requires.elts}
    assert not names & {"onnx", "onnxruntime", "openvino", "optimum", "optimum-onnx", "optimum-intel"}
    modules = [
        "mixcse_hf.models.encoder",
        "mixcse_hf.models.backends",
        "mixcse_hf.cli.encode",
        "mixcse_hf.cli.evaluate",
    ]
    modules += ["mixcse_hf.cli.mine", "mixcse_hf.cli.export", "mixcse_hf.hub.push", "run_mixcse"]
    code = (
        f"import sys\nfor name in {modules!r}:\n    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'openvino')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_all_minilm_l6_v2_int8_stays_within_its_cosine_bound(tmp_path: Path) -> None:
    from mixcse_hf.cli.export import export_folder, requested_kinds

    folder = tmp_path / "minilm"
    shutil.copytree(minilm_path(), folder)
    export_folder(str(folder), requested_kinds(int8=True, openvino=False, int8_vnni=True))
    reference = torch_encodings(folder)
    assert (encodings(folder, "onnx") - reference).abs().max().item() <= TORCH_TOLERANCE
    for int8_file in (INT8_FILE, INT8_VNNI_FILE):
        int8 = encodings(folder, "onnx", int8_file)
        assert (int8 * reference).sum(-1).min().item() >= INT8_MIN_COSINE["all-MiniLM-L6-v2"]
