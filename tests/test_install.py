"""The package installs into its user's environment: ranges, not pins (and a lock that satisfies them); pip's own
resolver keeps a typical CUDA image's torch and transformers; the wheel, installed outside the checkout, trains the
quick start by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mixcse_hf.errors import UsageError
from mixcse_hf.training.config import config_file_path, shipped_configs
from tests.conftest import REPO_ROOT

GPU_IMAGE = {"torch": "2.11.0", "transformers": "5.17.0", "sentence-transformers": "6.0.1"}
"""What a typical CUDA image brings (with no datasets): the environment a ``pip install mixcse_hf`` must keep."""


def requirements() -> list[Requirement]:
    """The installed package's requirements, its extras' included."""
    return [Requirement(line) for line in requires("mixcse_hf") or []]


def lock() -> dict[str, str]:
    lines = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return {
        name.lower().replace("_", "-"): pinned
        for name, _, pinned in (line.partition("==") for line in lines if line and not line.startswith("#"))
    }


def test_requirements_are_ranges_with_a_lower_bound() -> None:
    for requirement in requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert "==" not in operators, f"{requirement} is pinned: setup.py declares ranges, constraints.txt pins"
        if requirement.name != "tensorboard":  # any release: only its writer is used, through transformers
            assert ">=" in operators, f"{requirement} has no lower bound"


def test_the_lock_pins_every_requirement_inside_its_range() -> None:
    pinned = lock()
    for requirement in requirements():
        name = requirement.name.lower().replace("_", "-")
        if name == "tensorboard":
            continue
        assert name in pinned, f"constraints.txt has no pin for {name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside {requirement}"
        )


def _environment_with(tmp_path: Path, installed: dict[str, str]) -> Path:
    """A virtual environment that sees this interpreter's packages (a ``.pth`` file lists their folders, which works
    from inside a virtual environment too), with ``installed`` (name -> version) standing in front of them: the
    metadata pip's resolver reads of an installed distribution, nothing to import. Returns its python."""
    env = tmp_path / "env"
    venv.EnvBuilder().create(env)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    outer = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (purelib / "outer.pth").write_text("\n".join(outer) + "\n", encoding="utf-8")
    for name, version in installed.items():
        info = purelib / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
        (info / "INSTALLER").write_text("pip\n", encoding="utf-8")
    return env / "bin" / "python"


def _dry_run(python: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    report = tmp_path / "report.json"
    command = [str(python), "-m", "pip", "install", "--dry-run", "--report", str(report), "--quiet"]
    command += ["--no-index", "--no-build-isolation", f"{REPO_ROOT}[st]"]
    # Offline and with no configured find-links or constraints: only the installed distributions are candidates.
    offline = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    offline["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=offline)


def test_installing_into_a_cuda_image_keeps_its_torch_and_transformers(tmp_path: Path) -> None:
    """pip's resolver, offline: with the image's packages installed, installing mixcse_hf[st] installs mixcse_hf
    alone (every other requirement is met by this environment's packages)."""
    proc = _dry_run(_environment_with(tmp_path, GPU_IMAGE), tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [item["metadata"]["name"] for item in report["install"]] == ["mixcse_hf"]


def test_a_torch_below_the_range_would_be_replaced(tmp_path: Path) -> None:
    """The same resolver refuses to keep a torch the ranges exclude: it would need another (none offline)."""
    proc = _dry_run(_environment_with(tmp_path, {**GPU_IMAGE, "torch": "2.10.0"}), tmp_path)
    assert proc.returncode != 0
    assert "torch" in proc.stderr


def test_a_shipped_config_runs_by_name() -> None:
    assert Path(config_file_path("quickstart")) == REPO_ROOT / "mixcse_hf" / "configs" / "quickstart.yaml"
    assert config_file_path("configs/quickstart.yaml") == "configs/quickstart.yaml"
    assert config_file_path("mine.yaml") == "mine.yaml"  # a path: read_config_file says it is missing
    assert sorted(shipped_configs()) == sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
    with pytest.raises(UsageError, match=r"^config 'quikstart' is neither a file nor a shipped config; the shipped "):
        config_file_path("quikstart")


@pytest.mark.slow
def test_the_wheel_trains_the_quick_start_by_name_outside_the_checkout(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    """Built and installed as a user gets it (no checkout on the path), the wheel carries the configs, the STS
    metric module and the remote-code pooling file: ``mixcse-train quickstart`` trains from another directory and
    the saved model loads with its pooling head."""
    dist, source = tmp_path / "dist", tmp_path / "source"  # a copy: the build leaves build/ in its tree
    shutil.copytree(
        REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(".*", "build", "outputs", "*.egg-info")
    )
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(dist), str(source)], check=True, timeout=600, capture_output=True)
    python = _environment_with(tmp_path, {})
    (wheel,) = dist.glob("mixcse_hf-*.whl")
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", wheel]
    subprocess.run(install, check=True, timeout=600)

    (tmp_path / "wiki").mkdir()
    shutil.copy(tiny_corpus, tmp_path / "wiki" / "wiki1m_head.txt")  # tiny_senteval is tmp_path / "senteval"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {**os.environ, "MIXCSE_DATA_DIR": str(tmp_path), "PYTHONPATH": ""}
    flags = ["--model_name_or_path", tiny_model_dir, "--max_steps", "2", "--eval_steps", "1", "--save_steps", "1"]
    flags += ["--per_device_train_batch_size", "4", "--max_seq_length", "16", "--precision", "fp32"]
    train = subprocess.run(
        [python.parent / "mixcse-train", "quickstart", *flags],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    out = elsewhere / "outputs" / "quickstart"
    assert (out / "model.safetensors").is_file() and (out / "sts_results.json").is_file()
    check = (
        "import mixcse_hf, torch; from transformers import AutoModel, AutoTokenizer; "
        f"path = {str(out)!r}; tokens = AutoTokenizer.from_pretrained(path)(['a man plays'], return_tensors='pt'); "
        "model = AutoModel.from_pretrained(path, trust_remote_code=True); "
        "print(mixcse_hf.__file__); print(*model(**tokens).sentence_embedding.shape, sep='x')"
    )
    loaded = subprocess.run(
        [python, "-c", check], cwd=elsewhere, env=environment, capture_output=True, text=True, timeout=600, check=True
    )
    package_file, shape = loaded.stdout.split()[-2:]
    assert Path(package_file).is_relative_to(tmp_path / "env")
    assert shape == "1x32"


def test_the_oldest_stack_pins_each_lower_bound() -> None:
    """scripts/oldest_stack.py, which .ci/run builds its second environment from: the base requirements' and the
    named extras' lower bounds, nothing of the extras not named, nothing excluded."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("oldest_stack", REPO_ROOT / "scripts" / "oldest_stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pins = module.lower_bounds(["st"], ["torch"])
    names = {pin.partition("==")[0] for pin in pins}
    expected = {r.name for r in requirements() if not r.marker and r.name != "torch"} | {"sentence-transformers"}
    assert names == expected
    bounds = {str(spec) for r in requirements() for spec in r.specifier if spec.operator == ">="}
    assert {f">={pin.partition('==')[2]}" for pin in pins} <= bounds
