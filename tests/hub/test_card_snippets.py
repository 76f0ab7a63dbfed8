"""Every code snippet of every model card runs against the folder it describes and gives the model's embedding:
full checkpoints (with and without the MLP, with a pooler sentence-transformers lacks) and LoRA adapters. The
snippets of a folder saved by training name its absolute path (they run from any directory); a card rendered for
the Hub names the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.hub.card import LORA_REMOTE_CODE
from mixcse_hf.models.encoder import SentenceEncoder
from tests.conftest import train_tiny

SENTENCE = "A man is playing a guitar."
CHECKPOINTS = {
    "cls": ["--pooler_type", "cls"],
    "avg": ["--pooler_type", "avg"],
    "avg_top2": ["--pooler_type", "avg_top2"],
    "lora": ["--use_lora", "true", "--lora_r", "4", "--pooler_type", "cls"],
}


def _snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


@pytest.mark.parametrize("kind", sorted(CHECKPOINTS))
def test_card_snippets_run_against_their_folder(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / kind, *CHECKPOINTS[kind])
    card = (out / "README.md").read_text(encoding="utf-8")
    snippets = _snippets(card)
    assert len(snippets) >= 2
    expected = SentenceEncoder.from_pretrained(str(out)).encode([SENTENCE])[0]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    namespace: dict = {}
    for snippet in snippets:
        assert f'"{out}"' in snippet
        namespace.pop("embedding", None), namespace.pop("embeddings", None)
        exec(compile(snippet, f"{kind}/README.md", "exec"), namespace)
        produced = namespace.get("embedding", namespace.get("embeddings"))
        assert produced is not None, snippet
        first = torch.as_tensor(produced)[0].float()
        assert torch.allclose(first, expected, atol=1e-4), f"{kind}: snippet disagrees\n{snippet}"
    if kind == "lora":
        # trust_remote_code loads an adapter folder without error but with no head: the card says so, no snippet uses it
        assert not any("trust_remote_code" in snippet for snippet in snippets)
        assert LORA_REMOTE_CODE in " ".join(card.split())
        remote = AutoModel.from_pretrained(str(out), trust_remote_code=True)
        batch = AutoTokenizer.from_pretrained(str(out))([SENTENCE], return_tensors="pt")
        assert "sentence_embedding" not in remote(**batch)
        adapter_config = json.loads((out / "adapter_config.json").read_text())
        assert adapter_config["base_model_name_or_path"] == tiny_model_dir  # a local base stays usable here
