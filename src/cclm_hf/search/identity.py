"""Which model an index was built with: its name and its embeddings of a fixed probe image and text.

An index is only meaningful with the encoders that produced it. Names are unreliable (a local folder, a renamed
copy, a fine-tuned model saved under the old name), and hashing every weight of a 500M-parameter model on each load is
slow; so the identity is what the encoders *do*: the normalised embeddings of a deterministic probe image and probe
text, stored in the index's json. A model that reproduces them (cosine >= `PROBE_MIN_COSINE`, which tolerates
running the same weights in fp16/bf16 or with another attention kernel) is the same model for the index's purpose;
any other model is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..modeling_cclm import CCLMModel


PROBE_MIN_COSINE = 0.99
_PROBE_TEXT_LENGTH = 8


def _probe_inputs(model: CCLMModel) -> tuple[torch.Tensor, torch.Tensor]:
    config = model.config
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(1, 3, config.image_size, config.image_size, generator=generator)
    text_config = config.text_config
    # ids past the usual special tokens (0-3 in XLM-R), within any vocabulary
    input_ids = 4 + torch.randint(0, max(text_config.vocab_size - 4, 1), (1, _PROBE_TEXT_LENGTH), generator=generator)
    return pixel_values, input_ids


@torch.no_grad()
def probe_embeddings(model: CCLMModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised `(image_embed, text_embed)` `[E]` of the probe inputs, in fp32 on the CPU."""
    pixel_values, input_ids = _probe_inputs(model)
    image = model.get_image_features(pixel_values.to(model.device, model.dtype)).pooler_output
    text = model.get_text_features(input_ids.to(model.device)).pooler_output
    return F.normalize(image.float(), dim=-1)[0].cpu(), F.normalize(text.float(), dim=-1)[0].cpu()


def model_identity(model: CCLMModel) -> dict[str, Any]:
    """What `index.json` records about the model (json-serialisable); a local folder is recorded absolute."""
    image, text = probe_embeddings(model)
    name = model.config._name_or_path or type(model).__name__
    return {
        "name_or_path": str(Path(name).resolve()) if Path(name).is_dir() else name,
        "model_type": model.config.model_type,
        "projection_dim": model.config.projection_dim,
        "probe_image_embed": image.tolist(),
        "probe_text_embed": text.tolist(),
    }


def check_model_identity(recorded: dict[str, Any], model: CCLMModel, where: str) -> None:
    """Raise a `ValueError` naming both models when `model` is not the one `recorded` describes."""
    name = model.config._name_or_path or type(model).__name__
    built_with = recorded.get("name_or_path", "<unknown>")
    refusal = (
        f"{where} was built with model {built_with!r} and cannot be searched with model {name!r}: "
        "rebuild the index with this model, or load the model it was built with"
    )
    if recorded.get("projection_dim") != model.config.projection_dim:
        raise ValueError(
            f"{refusal} (embedding width {recorded.get('projection_dim')} vs {model.config.projection_dim})"
        )
    image, text = probe_embeddings(model)
    cosines = {
        "image": float(image @ torch.tensor(recorded["probe_image_embed"])),
        "text": float(text @ torch.tensor(recorded["probe_text_embed"])),
    }
    if min(cosines.values()) < PROBE_MIN_COSINE:
        raise ValueError(
            f"{refusal} (its embeddings of the probe image / text differ: cosine {cosines['image']:.3f} / "
            f"{cosines['text']:.3f}, at least {PROBE_MIN_COSINE} needed)"
        )
