"""Publishing up to the network boundary: the folders handed to huggingface_hub are complete and loadable,
tokens appear nowhere. Nothing reaches the network: HfApi is replaced by a recorder."""

from __future__ import annotations

import fnmatch
import json
from concurrent.futures import Future
from pathlib import Path

import pytest
import transformers.trainer
import yaml
from huggingface_hub import CommitOperationAdd, RepoUrl
from huggingface_hub.errors import OfflineModeIsEnabled
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mixcse_hf.cli import push as push_cli
from mixcse_hf.hub import export, push
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.run_dir import UPLOAD_IGNORE_PATTERNS
from run_mixcse import main as run_main
from tests.conftest import SENTENCES, train_tiny

SECRET = "hf_TESTtokenNEVERwritten0123456789"
PRIVATE_FILES = {
    *("trainer_state.json", "run_config.yaml", "mixcse_card.json", "mixcse_run.json", "sts_results.json"),
    *("training_args.bin", "all_results.json", "train_results.json", "eval_results.json"),
}


class RecordingHubApi:
    """Stands in for huggingface_hub.HfApi: records repos and writes each commit's files into a folder."""

    def __init__(self, snapshots: Path) -> None:
        self.snapshots = snapshots
        self.repos: list[str] = []
        self.uploads: list[Path] = []

    def create_repo(self, repo_id: str, **kwargs: object) -> RepoUrl:
        self.repos.append(repo_id)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id: str, operations: list[CommitOperationAdd], **kwargs: object):
        target = self.snapshots / f"upload-{len(self.uploads)}"
        for operation in operations:
            destination = target / operation.path_in_repo
            destination.parent.mkdir(parents=True, exist_ok=True)
            with operation.as_file() as handle:
                destination.write_bytes(handle.read())
        self.uploads.append(target)
        if kwargs.get("run_as_future"):
            done: Future = Future()
            done.set_result(None)
            return done
        return f"https://huggingface.co/{repo_id}/commit/0"


def _assert_loadable(folder: Path) -> None:
    reference = SentenceEncoder.from_pretrained(str(folder)).encode(SENTENCES[:4])
    st = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES[:4], convert_to_tensor=True)
    assert (st.cpu() - reference).abs().max() <= 1e-5
    remote = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(remote).__name__ == "MixCSEBertModel"


def _files_containing(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_push_existing_checkpoint(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--pooler_type", "cls")
    api = RecordingHubApi(tmp_path / "hub")
    monkeypatch.setattr(push, "HfApi", lambda: api)
    assert push_cli.main([str(out), "someone/mixcse-tiny"]) == 0
    assert api.repos == ["someone/mixcse-tiny"]
    (uploaded,) = api.uploads
    names = {p.name for p in uploaded.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_mixcse.py", "modules.json", "README.md"} <= names
    assert not names & PRIVATE_FILES and not any(name.startswith("checkpoint-") for name in names)
    card = (uploaded / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert "base_model" not in metadata  # a local path means nothing on the Hub
    assert _files_containing(uploaded, str(tmp_path)) == []  # no local path in anything published
    assert 'SentenceTransformer("someone/mixcse-tiny")' in card
    _assert_loadable(uploaded)
    assert "https://huggingface.co/someone/mixcse-tiny/commit/0" in capsys.readouterr().out


def test_push_uploads_the_folder_as_the_run_left_it(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second export and no reload: the upload is the folder's files less the run's records, byte for byte
    except the card (rendered for the repository), and the folder itself is left untouched."""
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--pooler_type", "cls")
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    api = RecordingHubApi(tmp_path / "hub")
    monkeypatch.setattr(push, "HfApi", lambda: api)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a push exported or loaded the model again")

    monkeypatch.setattr(export, "export_checkpoint", forbidden)
    monkeypatch.setattr(AutoModel, "from_pretrained", forbidden)
    assert push_cli.main([str(out), "someone/mixcse-tiny"]) == 0
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    (uploaded,) = api.uploads
    sent = {str(p.relative_to(uploaded)): p.read_bytes() for p in uploaded.rglob("*") if p.is_file()}
    kept = {name for name in before if not any(fnmatch.fnmatch(name, pattern) for pattern in UPLOAD_IGNORE_PATTERNS)}
    assert set(sent) == kept
    assert {name for name in sent if sent[name] != before[name]} == {"README.md"}


def test_push_refuses_a_folder_without_a_model(tmp_path: Path, capsys) -> None:
    assert push_cli.main([str(tmp_path), "someone/x"]) == 2
    assert "neither a model" in capsys.readouterr().err


def _http_module():
    """The HTTP client library huggingface_hub raises the errors of (its ``errors.HTTPError`` is that library's)."""
    import importlib

    from huggingface_hub.errors import HTTPError

    return importlib.import_module(HTTPError.__module__)


def _hub_error(status: int, server_message: str) -> Exception:
    """The error huggingface_hub raises for a response of ``status`` from the Hub."""
    from huggingface_hub.utils import hf_raise_for_status

    http = _http_module()
    request = http.Request("POST", "https://huggingface.co/api/repos/create")
    try:
        hf_raise_for_status(http.Response(status, request=request, json={"error": server_message}))
    except Exception as err:  # whatever it raises is what the push meets
        return err
    raise AssertionError(f"no error for status {status}")


HUB_FAILURES = {
    "offline mode": (
        lambda: OfflineModeIsEnabled("Cannot reach https://huggingface.co/api/repos/create: offline mode is enabled."),
        "create_repo",
        "unset HF_HUB_OFFLINE",
    ),
    "no network": (
        lambda: _http_module().ConnectError("[Errno -2] Name or service not known"),
        "create_repo",
        "(ConnectError: [Errno -2] Name or service not known); check the network",
    ),
    "connection lost in the upload": (
        lambda: _http_module().ReadTimeout("The read operation timed out"),
        "create_commit",
        "(ReadTimeout: The read operation timed out); check the network",
    ),
    "bad token": (
        lambda: _hub_error(401, "Invalid username or password."),
        "create_repo",
        "(HTTP 401 Unauthorized: Invalid username or password.); log in",
    ),
    "server error": (lambda: _hub_error(500, "Internal Error"), "create_commit", "HTTP 500 Internal Server Error"),
}


class FailingHubApi(RecordingHubApi):
    """huggingface_hub.HfApi whose call ``method`` raises ``error`` (what it raises without network or rights)."""

    def __init__(self, snapshots: Path, method: str, error: Exception) -> None:
        super().__init__(snapshots)
        self.method, self.error = method, error

    def create_repo(self, repo_id: str, **kwargs: object) -> RepoUrl:
        if self.method == "create_repo":
            raise self.error
        return super().create_repo(repo_id, **kwargs)

    def create_commit(self, repo_id: str, operations: list[CommitOperationAdd], **kwargs: object):
        if self.method == "create_commit":
            raise self.error
        return super().create_commit(repo_id, operations, **kwargs)


@pytest.mark.parametrize("case", list(HUB_FAILURES))
def test_push_without_network_or_rights_is_one_line_and_leaves_the_folder(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """huggingface_hub's connection and HTTP errors, and offline mode: exit status 2, one line naming the repository
    and the cause; the folder is as it was (a push writes nothing locally)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    make_error, method, message = HUB_FAILURES[case]
    monkeypatch.setattr(push, "HfApi", lambda: FailingHubApi(tmp_path / "hub", method, make_error()))
    assert push_cli.main([str(folder), "someone/mixcse-tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot push") and err.count("\n") == 1, err
    assert "'someone/mixcse-tiny'" in err and message in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_push_to_hub_without_network_stops_before_training(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """--push_to_hub creates the repository before training: offline, that is one line, and nothing is written."""
    make_error, method, message = HUB_FAILURES["offline mode"]
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FailingHubApi(tmp_path / "hub", method, make_error()))
    out = tmp_path / "out"
    flags = ["--model_name_or_path", tiny_model_dir, "--train_file", str(tiny_corpus), "--output_dir", str(out)]
    flags += ["--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none", "--do_eval", "false"]
    flags += ["--push_to_hub", "true", "--hub_model_id", "someone/tiny-mixcse"]
    assert run_main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot push") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_push_to_hub_during_training_sends_complete_folders(
    tiny_model_dir: str,
    tiny_corpus: Path,
    tiny_senteval: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--push_to_hub with hub_strategy every_save: every upload (mid-training and final) carries our files and
    card; the token is in no file, log line or printed output."""
    api = RecordingHubApi(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: api)
    monkeypatch.setattr(push, "HfApi", lambda: api)  # the final push goes through mixcse_hf.hub.push
    caplog.set_level("DEBUG")
    flags = ["--push_to_hub", "true", "--hub_model_id", "someone/tiny-mixcse", "--hub_token", SECRET]
    flags += ["--hub_strategy", "every_save", "--senteval_dir", str(tiny_senteval), "--do_eval", "true"]
    flags += ["--eval_strategy", "steps", "--eval_steps", "1"]
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *flags)

    assert set(api.repos) == {"someone/tiny-mixcse"}
    assert len(api.uploads) >= 2
    for uploaded in api.uploads:
        names = {p.name for p in uploaded.iterdir()}
        assert {"modeling_mixcse.py", "modules.json", "README.md", "2_Dense", "model.safetensors"} <= names
        assert not names & PRIVATE_FILES, names & PRIVATE_FILES
        assert not any(name.endswith((".pt", ".pth")) for name in names)
        assert "tiny-mixcse" in (uploaded / "README.md").read_text()
    final_card = (api.uploads[-1] / "README.md").read_text()
    assert "| STS-B test |" in final_card
    _assert_loadable(api.uploads[-1])

    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err + caplog.text
    assert _files_containing(out, SECRET) == []
    assert _files_containing(tmp_path / "hub", SECRET) == []


def test_model_card_metadata(tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path) -> None:
    flags = ["--senteval_dir", str(tiny_senteval), "--do_eval", "true", "--mix_lambda", "0.3", "--temp", "0.07"]
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "run-a", *flags)
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    results = {r["dataset"]["split"]: r["metrics"][0]["value"] for r in metadata["model-index"][0]["results"]}
    measured = yaml.safe_load((out / "sts_results.json").read_text())["stsb_spearman"]["cls"]["trained"]
    assert results == {"validation": measured["dev"], "test": measured["test"]}
    # scores from local SentEval files are named by those files, not by a Hub copy that was not read
    datasets = {r["dataset"]["type"] for r in metadata["model-index"][0]["results"]}
    assert datasets == {"sts-dev.csv", "sts-test.csv"}
    assert json.loads((out / "mixcse_card.json").read_text())["train_data"] == "corpus.txt"
    assert metadata["library_name"] == "sentence-transformers"
    assert metadata["pipeline_tag"] == "sentence-similarity"
    assert "| `mix_lambda` | 0.3 |" in card
    assert "| `temp` | 0.07 |" in card
    assert "| `training steps` | 2 |" in card
    assert "zhang2022mixcse" in card and "gao2021simcse" in card


def test_hub_strategies_that_upload_resume_state_are_refused(tmp_path: Path, capsys) -> None:
    from run_mixcse import main

    flags = ["--model_name_or_path", "m", "--train_file", "t.txt", "--output_dir", str(tmp_path / "out")]
    flags += ["--push_to_hub", "true", "--hub_model_id", "someone/x", "--hub_strategy", "checkpoint"]
    assert main(flags) == 2
    assert "hub_strategy 'checkpoint' would upload the Trainer's resume state" in capsys.readouterr().err
