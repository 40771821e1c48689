"""Build a `CCLMConfig` from the original repository's configuration files.

The original describes one model with three files: a task yaml (`configs/Pretrain_3m.yaml`, `configs/cclm-base-ft/*.yaml`)
that names a Swin json (`configs/config_swinB_224.json`) and an XLM-R folder whose `config.json` gives the text widths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..configuration_cclm import CCLMConfig
from ..errors import CCLMUserError


# The original hard-codes these Swin hyper-parameters in `build_vision_encoder`.
_SWIN_FIXED = {"patch_size": 4, "mlp_ratio": 4.0, "qkv_bias": True, "drop_path_rate": 0.1, "layer_norm_eps": 1e-5}
_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "initializer_range",
)


class OriginalConfigError(CCLMUserError, ValueError):
    """An original configuration file is unreadable or lacks what the conversion needs; the message names it."""


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise OriginalConfigError(f"{where}: missing field {key!r}")
    return mapping[key]


def config_from_original(
    task_config: dict[str, Any],
    vision_config: dict[str, Any],
    text_config: dict[str, Any],
    num_labels: int | None = None,
) -> CCLMConfig:
    """Translate the original's three configuration dicts.

    Args:
        task_config: the task yaml (`image_res`, `text_num_hidden_layers`, `embed_dim`, `temp`, optionally
            `num_labels` and the VQA decoder's `num_dec_layers`).
        vision_config: the Swin json (`image_res`, `window_size`, `embed_dim`, `depths`, `num_heads`, `vision_width`).
        text_config: XLM-R's `config.json`.
        num_labels: classification labels; defaults to the yaml's `num_labels` when present.
    """
    if task_config.get("use_clip_vit") or not task_config.get("use_swin", True):
        raise OriginalConfigError(
            "Only the Swin vision encoder of CCLM-3M/4M is supported (use_swin: True, use_clip_vit: False)"
        )
    image_size = _require(vision_config, "image_res", "vision config")
    if "image_res" in task_config and task_config["image_res"] != image_size:
        raise OriginalConfigError(
            f"task config image_res={task_config['image_res']} differs from the vision config's image_res={image_size}"
        )
    depths = list(_require(vision_config, "depths", "vision config"))
    embed_dim = _require(vision_config, "embed_dim", "vision config")
    vision_width = embed_dim * 2 ** (len(depths) - 1)
    if vision_config.get("vision_width", vision_width) != vision_width:
        raise OriginalConfigError(
            f"vision config vision_width={vision_config['vision_width']} but embed_dim={embed_dim} with "
            f"{len(depths)} stages gives {vision_width}"
        )
    swin = {
        "image_size": image_size,
        "window_size": _require(vision_config, "window_size", "vision config"),
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": list(_require(vision_config, "num_heads", "vision config")),
        **_SWIN_FIXED,
    }

    num_layers = _require(task_config, "text_num_hidden_layers", "task config")
    text = {field: text_config[field] for field in _TEXT_FIELDS if field in text_config}
    text.update(
        num_hidden_layers=num_layers,
        # the original fixes the fusion boundary at half the stack (`fusion_layer = num_hidden_layers // 2`)
        num_fusion_layers=num_layers - num_layers // 2,
        cross_attention_hidden_size=vision_width,
        position_id_scheme="zero_based",
    )

    kwargs: dict[str, Any] = {}
    labels = num_labels if num_labels is not None else task_config.get("num_labels")
    if labels is not None:
        kwargs["num_labels"] = labels
    if "num_dec_layers" in task_config:  # the VQA answer decoder
        kwargs["num_answer_decoder_layers"] = task_config["num_dec_layers"]
    return CCLMConfig(
        vision_config=swin,
        text_config=text,
        projection_dim=task_config.get("embed_dim", 256),
        temperature_init_value=task_config.get("temp", 0.07),
        **kwargs,
    )


def _read_structured(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle) if path.suffix in (".yaml", ".yml") else json.load(handle)
        except (yaml.YAMLError, ValueError) as error:
            raise OriginalConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'json'} ({error})") from error
    if not isinstance(data, dict):
        raise OriginalConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def config_from_original_files(
    task_config_path: str | Path,
    vision_config_path: str | Path | None = None,
    text_config_path: str | Path | None = None,
    num_labels: int | None = None,
) -> CCLMConfig:
    """Read the original yaml and the files it refers to.

    `vision_config_path` defaults to the yaml's `vision_config` entry and `text_config_path` to
    `<text_encoder>/config.json`, both resolved relative to the current directory as the original scripts do.
    `text_config_path` may be the folder or the `config.json` itself.
    """
    task_config_path = Path(task_config_path)
    task_config = _read_structured(task_config_path)
    vision_path = Path(vision_config_path or _require(task_config, "vision_config", str(task_config_path)))
    text_path = Path(text_config_path or _require(task_config, "text_encoder", str(task_config_path)))
    if text_path.is_dir():
        text_path = text_path / "config.json"
    for path, what in ((vision_path, "Swin json"), (text_path, "XLM-R config.json")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found at {path} (named by {task_config_path}; pass it explicitly)")
    return config_from_original(task_config, _read_structured(vision_path), _read_structured(text_path), num_labels)
