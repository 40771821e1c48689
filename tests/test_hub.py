"""Uploads to the Hub, offline: transformers' `push_to_hub` of every head and of the processor, and `cclm-hf push`,
against a stand-in for `huggingface_hub.HfApi` that keeps the bytes it is sent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx2
import pytest
import torch
import transformers.utils.hub
from huggingface_hub import CommitInfo, ModelCard, RepoUrl
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from model_factories import tiny_config
from safetensors.torch import load_file

import cclm_hf.hub
from cclm_hf import (
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForSequenceClassification,
    CCLMImageProcessor,
    CCLMModel,
    CCLMProcessor,
)
from cclm_hf.cli import main as cli_main
from cclm_hf.errors import CCLMUserError
from cclm_hf.hub import HubUploadError, files_to_upload, push_folder
from cclm_hf.model_card import write_model_card


class FakeHub:
    """Records what an `HfApi` is asked to do; `create_commit` reads every file it is given, as the real one does."""

    def __init__(self, refuse_with: int | None = None):
        self.refuse_with = refuse_with
        self.calls: list[tuple] = []
        self.uploaded: dict[str, bytes] = {}
        self.constructed_with: dict = {}

    def __call__(self, **kwargs) -> FakeHub:  # stands in for the HfApi class too
        self.constructed_with = kwargs
        return self

    def create_repo(self, repo_id: str, **kwargs) -> RepoUrl:
        self.calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id: str, **kwargs) -> None:
        self.calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id: str, operations, commit_message: str, **kwargs) -> CommitInfo:
        if self.refuse_with:
            response = httpx2.Response(self.refuse_with, request=httpx2.Request("POST", "https://huggingface.co/api"))
            raise HfHubHTTPError(
                f"{self.refuse_with} Client Error\nmore details", response=response, server_message="no write access"
            )
        self.calls.append(("create_commit", repo_id, {"commit_message": commit_message, **kwargs}))
        for operation in operations:
            self.uploaded[operation.path_in_repo] = Path(operation.path_or_fileobj).read_bytes()
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
            commit_message=commit_message,
            commit_description="",
            oid="0" * 40,
        )

    def commits(self) -> list[dict]:
        return [kwargs for name, _, kwargs in self.calls if name == "create_commit"]

    def write_to(self, folder: Path) -> Path:
        for name, data in self.uploaded.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder


@pytest.fixture
def transformers_hub(monkeypatch) -> FakeHub:
    """transformers' push_to_hub through a FakeHub; the repository has no card yet."""
    hub = FakeHub()
    monkeypatch.setattr(transformers.utils.hub, "hf_api", lambda: hub)

    def no_card_yet(*args, **kwargs):
        raise EntryNotFoundError("no README.md")

    monkeypatch.setattr(ModelCard, "load", no_card_yet)
    return hub


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize(
    "model_class", [CCLMModel, CCLMForImageTextRetrieval, CCLMForSequenceClassification, CCLMForPreTraining]
)
def test_push_to_hub_of_every_head_uploads_a_reloadable_model(transformers_hub, tmp_path, model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config()).eval()
    model.push_to_hub("someone/tiny-cclm", commit_message="first upload")

    assert transformers_hub.calls[0][:2] == ("create_repo", "someone/tiny-cclm")
    (commit,) = transformers_hub.commits()
    assert commit["commit_message"] == "first upload"
    # the weights, the config with its auto_map, the modeling code for trust_remote_code, and a card
    expected = {"config.json", "model.safetensors", "configuration_cclm.py", "modeling_cclm.py", "README.md"}
    assert expected <= set(transformers_hub.uploaded), sorted(transformers_hub.uploaded)
    reloaded = model_class.from_pretrained(transformers_hub.write_to(tmp_path)).eval()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert load_file(tmp_path / "model.safetensors").keys()  # a real safetensors file was sent


def test_push_to_hub_default_message_and_processor(transformers_hub, tiny_tokenizer, tmp_path):
    CCLMModel(tiny_config()).push_to_hub("someone/tiny-cclm")
    processor = CCLMProcessor(CCLMImageProcessor(size={"height": 32, "width": 32}), tiny_tokenizer)
    processor.push_to_hub("someone/tiny-cclm", revision="dev")
    model_commit, processor_commit = transformers_hub.commits()
    assert model_commit["commit_message"] == "Upload model"
    assert processor_commit["commit_message"] == "Upload processor" and processor_commit["revision"] == "dev"
    assert ("create_branch", "someone/tiny-cclm", {"branch": "dev", "token": None, "exist_ok": True}) in (
        transformers_hub.calls
    )
    assert {"processor_config.json", "tokenizer_config.json"} <= set(transformers_hub.uploaded)
    reloaded = CCLMProcessor.from_pretrained(transformers_hub.write_to(tmp_path))
    assert reloaded.tokenizer.get_vocab() == tiny_tokenizer.get_vocab()


@pytest.fixture
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "cclm-tiny"
    model = CCLMForImageTextRetrieval(tiny_config())
    model.save_pretrained(folder)
    write_model_card(model, folder, "Random weights, for the test.")
    (folder / "metrics.json").write_text("{}")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("x")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"big")
    return folder


def test_cli_push_uploads_the_folder_in_one_commit(monkeypatch, model_folder, capsys):
    hub = FakeHub()
    monkeypatch.setattr(cclm_hf.hub, "HfApi", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    before = _tree_digest(model_folder)
    argv = ["push", str(model_folder), "someone/cclm-tiny", "--private", "--revision", "v1", "--commit-message", "m"]
    assert cli_main(argv) == 0

    assert hub.constructed_with["token"] == "hf_test_token"
    assert [name for name, _, _ in hub.calls] == ["create_repo", "create_branch", "create_commit"]
    assert hub.calls[0][2]["private"] is True and hub.calls[1][2]["branch"] == "v1"
    (commit,) = hub.commits()
    assert commit == {"commit_message": "m", "revision": "v1"}
    names = set(hub.uploaded)
    assert names == {str(path) for path in files_to_upload(model_folder)}
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "modeling_cclm.py"} <= names
    assert not any(name.startswith((".cache", "checkpoint-")) for name in names)
    assert all(hub.uploaded[name] == (model_folder / name).read_bytes() for name in names)
    assert _tree_digest(model_folder) == before
    assert "someone/cclm-tiny/commit/" in capsys.readouterr().out


def test_push_default_commit_message_names_the_model(monkeypatch, model_folder):
    hub = FakeHub()
    monkeypatch.setattr(cclm_hf.hub, "HfApi", hub)
    push_folder(model_folder, "someone/cclm-tiny", token="hf_x")
    (commit,) = hub.commits()
    assert commit["commit_message"] == f"Upload CCLMForImageTextRetrieval with cclm-hf {cclm_hf.__version__}"
    assert commit["revision"] is None


def test_push_without_token_says_so_and_contacts_nobody(monkeypatch, model_folder, capsys):
    def no_hub(**kwargs):
        raise AssertionError("the Hub must not be contacted without a token")

    monkeypatch.setattr(cclm_hf.hub, "HfApi", no_hub)
    monkeypatch.setattr(cclm_hf.hub, "get_token", lambda: None)
    before = _tree_digest(model_folder)
    assert cli_main(["push", str(model_folder), "someone/cclm-tiny"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no Hugging Face token" in error and "hf auth login" in error
    assert _tree_digest(model_folder) == before


def test_refused_upload_is_one_clear_line(monkeypatch, model_folder, capsys):
    monkeypatch.setattr(cclm_hf.hub, "HfApi", FakeHub(refuse_with=403))
    monkeypatch.setenv("HF_TOKEN", "hf_read_only_token")
    before = _tree_digest(model_folder)
    assert cli_main(["push", str(model_folder), "someone/cclm-tiny", "--private"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "refused the upload" in error and "HTTP 403" in error and "no write access" in error
    assert _tree_digest(model_folder) == before


def test_offline_mode_is_reported(monkeypatch, model_folder):
    # the real HfApi under HF_HUB_OFFLINE=1 (set for the whole test-suite)
    with pytest.raises(HubUploadError, match="HF_HUB_OFFLINE is set"):
        push_folder(model_folder, "someone/cclm-tiny", token="hf_x")


def test_push_refuses_folders_without_a_valid_card(monkeypatch, model_folder, tmp_path):
    monkeypatch.setattr(cclm_hf.hub, "HfApi", FakeHub())
    (model_folder / "README.md").write_text("---\nlicense: [not, an, id]\n---\n# t\n")
    with pytest.raises(
        CCLMUserError, match=r"README.md: library_name is None.*license \[.not., .an., .id.\] is not a license id"
    ):
        push_folder(model_folder, "someone/cclm-tiny", token="hf_x")
    (model_folder / "README.md").unlink()
    with pytest.raises(CCLMUserError, match="cclm-hf card"):
        push_folder(model_folder, "someone/cclm-tiny", token="hf_x")
    with pytest.raises(CCLMUserError, match="no config.json"):
        push_folder(tmp_path / "nothing", "someone/cclm-tiny", token="hf_x")
