"""Convert an original checkpoint into a complete model folder: weights, processor, `conversion.json`, model card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from transformers.utils import logging

from .. import __version__
from ..configuration_cclm import CCLMConfig
from ..model_card import write_model_card
from ..modeling_cclm import CCLMPreTrainedModel
from .convert import convert_original_checkpoint, load_original_state_dict


logger = logging.get_logger(__name__)


@dataclass
class ConversionRecord:
    """What `conversion.json` says about a converted folder; the model card's conversion and parity sections."""

    source_file: str
    source_sha256: str
    source_bytes: int
    architecture: str
    model_class: str
    head: str
    image_size: int
    window_size: int
    converted_tensors: int
    dropped_buffers: int
    dropped_parts: list[str]
    resized_tables: int
    newly_initialized: list[str]
    reload_max_abs_diff: float
    command: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


def sha256_of_file(path: str | Path, chunk_bytes: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint_to_folder(
    checkpoint: str | Path,
    output_dir: str | Path,
    config: CCLMConfig,
    head: str = "retrieval",
    *,
    architecture: str = "given as a CCLMConfig",
    tokenizer: str | None = None,
    command: str | None = None,
) -> ConversionRecord:
    """Convert `checkpoint` (see `load_original_state_dict`) into `output_dir`.

    Writes the model (`save_pretrained`), a `CCLMProcessor` when `tokenizer` (a folder or Hub name of the XLM-R
    tokenizer) is given, `conversion.json` (the returned record) and `README.md`. The record's
    `reload_max_abs_diff` compares the converted model with the folder reloaded through `from_pretrained` on a random
    batch: the saved files hold exactly what was converted.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    state_dict = load_original_state_dict(checkpoint)
    model, report = convert_original_checkpoint(state_dict, config, head=head)
    model.save_pretrained(output_dir)
    record = ConversionRecord(
        source_file=checkpoint.name,
        source_sha256=sha256_of_file(checkpoint),
        source_bytes=checkpoint.stat().st_size,
        architecture=architecture,
        model_class=type(model).__name__,
        head=head,
        image_size=config.image_size,
        window_size=config.vision_config.window_size,
        converted_tensors=len(state_dict) - len(report.dropped_buffers + report.dropped_tied + report.dropped_parts),
        dropped_buffers=len(report.dropped_buffers),
        dropped_parts=report.dropped_part_prefixes,
        resized_tables=len(report.resized),
        newly_initialized=report.newly_initialized,
        reload_max_abs_diff=_reload_max_abs_diff(model, output_dir),
        command=command,
        versions={"cclm-hf": __version__, "transformers": transformers.__version__, "torch": torch.__version__},
    )
    if tokenizer:
        from transformers import AutoTokenizer

        from ..processing_cclm import CCLMProcessor

        processor = CCLMProcessor.from_tokenizer(AutoTokenizer.from_pretrained(tokenizer), config.image_size)
        processor.save_pretrained(output_dir)
    (output_dir / "conversion.json").write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
    write_model_card(model, output_dir, repo=output_dir.name, conversion=asdict(record))
    logger.info(
        "wrote %s to %s (%d tables resized, %d parameters newly initialised)",
        record.model_class,
        output_dir,
        record.resized_tables,
        len(record.newly_initialized),
    )
    return record


@torch.no_grad()
def _reload_max_abs_diff(model: CCLMPreTrainedModel, folder: Path) -> float:
    """Max abs difference between `model` and the folder it was saved to, reloaded, on a random (image, caption)
    pair: image tokens, text states and fused states, so the saved config must reproduce every encoder."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(1, 3, config.image_size, config.image_size, generator=generator)
    input_ids = torch.randint(3, config.text_config.vocab_size, (1, 8), generator=generator)
    input_ids[:, 0] = config.text_config.bos_token_id or 0

    def encode(candidate: CCLMPreTrainedModel) -> list[torch.Tensor]:
        cclm = candidate.base_model
        image_tokens = cclm.get_image_features(pixel_values).last_hidden_state
        text_states = cclm.get_text_features(input_ids).last_hidden_state
        return [image_tokens, text_states, cclm.fuse_views(text_states, None, image_tokens).last_hidden_state]

    reloaded = type(model).from_pretrained(folder).eval()
    return max(float((a - b).abs().max()) for a, b in zip(encode(model), encode(reloaded), strict=True))
