"""Load the model an index needs from a folder or Hub name, and open a saved index with the model it records."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from transformers import AutoProcessor

from ..modeling_cclm import CCLMForImageTextRetrieval, CCLMModel
from .index import INDEX_FILE, CCLMIndex


logger = logging.getLogger(__name__)


def load_model_and_processor(
    name_or_path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[CCLMForImageTextRetrieval | CCLMModel, object]:
    """A `CCLMForImageTextRetrieval` in eval mode and its processor.

    A folder without matching-head weights (e.g. a `CCLMModel` checkpoint) is loaded as `CCLMModel` instead of
    with a randomly initialised head, so that re-ranking with it fails with a clear error instead of ranking by
    noise. `device` defaults to CUDA when available.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, loading_info = CCLMForImageTextRetrieval.from_pretrained(name_or_path, output_loading_info=True)
    if any(key.startswith("itm_head.") for key in loading_info["missing_keys"]):
        logger.warning(
            "%s has no matching-head weights: loaded without the head, searches cannot re-rank", name_or_path
        )
        model = CCLMModel.from_pretrained(name_or_path)
    processor = AutoProcessor.from_pretrained(name_or_path)
    return model.to(device).eval(), processor


def open_index(
    directory: str | os.PathLike,
    model_name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> CCLMIndex:
    """Load the index in `directory` with `model_name_or_path`, by default the model recorded in its `index.json`."""
    if model_name_or_path is None:
        index_file = Path(directory) / INDEX_FILE
        if not index_file.is_file():
            raise FileNotFoundError(f"no index at {str(directory)!r} ({INDEX_FILE} not found)")
        recorded = json.loads(index_file.read_text())["model"]["name_or_path"]
        try:
            model, processor = load_model_and_processor(recorded, device)
        except OSError as error:
            raise OSError(
                f"{index_file} records the model {recorded!r}, which cannot be loaded ({error}); pass the model "
                "folder or Hub name it was built with explicitly"
            ) from error
    else:
        model, processor = load_model_and_processor(model_name_or_path, device)
    return CCLMIndex.load(directory, model, processor)
