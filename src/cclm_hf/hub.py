"""Upload a saved folder (model, processor, card, metrics) to the Hugging Face Hub in one commit.

`model.push_to_hub(...)` / `processor.push_to_hub(...)` (transformers' own) upload one object and write
transformers' default card unless the repository already has one; `push_folder` uploads everything a folder holds,
with the card `cclm-hf card` wrote, after checking the card offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from transformers.utils import logging

from . import __version__
from .errors import CCLMUserError
from .model_card import validate_model_card


logger = logging.get_logger(__name__)

# Trainer's intermediate checkpoints (weights, optimizer and RNG states) are not part of the published model.
_SKIPPED_FOLDERS = ("checkpoint-*",)


class HubUploadError(CCLMUserError):
    """No token, no network, or the Hub refused the upload; nothing local was changed."""


def files_to_upload(folder: str | Path) -> list[Path]:
    """The files of `folder` that `push_folder` uploads, relative to it: every file except hidden ones and those in
    Trainer checkpoint folders."""
    folder = Path(folder)
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if any(Path(part).match(pattern) for part in relative.parts[:-1] for pattern in _SKIPPED_FOLDERS):
            continue
        files.append(relative)
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> CommitInfo:
    """Create `repo_id` if needed and upload `folder` to it in one commit.

    Args:
        folder: a saved model folder with a `README.md` card (`cclm-hf card FOLDER` writes one).
        repo_id: `"user/name"` or `"org/name"`.
        private: create the repository private (an existing repository keeps its visibility).
        revision: the branch to commit to, created from the main branch when missing.
        commit_message: defaults to "Upload <model class> with cclm-hf <version>".
        token: defaults to the stored login (`hf auth login`) or `HF_TOKEN`.

    Raises:
        CCLMUserError: the folder is not a model folder or its card is invalid.
        HubUploadError: no token, offline mode, or the Hub refused a step (the message has its reason).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CCLMUserError(f"{folder}: not a saved model folder (no config.json)")
    card = folder / "README.md"
    if not card.is_file():
        raise CCLMUserError(f"{folder}: no README.md model card; write one with `cclm-hf card {folder}`")
    validate_model_card(card.read_text(encoding="utf-8"), source=str(card))
    files = files_to_upload(folder)
    token = token or get_token()
    if not token:
        raise HubUploadError(f"cannot upload {folder}: no Hugging Face token (run `hf auth login` or set HF_TOKEN)")
    architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or ["model"]
    commit_message = commit_message or f"Upload {architectures[0]} with cclm-hf {__version__}"
    operations = [
        CommitOperationAdd(path_in_repo=path.as_posix(), path_or_fileobj=str(folder / path)) for path in files
    ]

    api = HfApi(token=token, library_name="cclm-hf", library_version=__version__)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        logger.info("Uploading %d files of %s to %s in one commit", len(operations), folder, repo_id)
        return api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision)
    except OfflineModeIsEnabled as error:
        raise HubUploadError(f"cannot upload {folder}: HF_HUB_OFFLINE is set (unset it to reach the Hub)") from error
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        reason = error.server_message or str(error).strip().splitlines()[0]
        raise HubUploadError(
            f"the Hub refused the upload of {folder} to {repo_id} (HTTP {status}): {reason}"
        ) from error


__all__ = ["HubUploadError", "files_to_upload", "push_folder"]
