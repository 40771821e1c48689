"""ONNX export of CCLM's dual encoder and matching scorer, for serving retrieval without PyTorch.

`export_onnx(FOLDER, OUT_DIR)` writes three graphs, each with a dynamic batch axis (and dynamic text length):

| file | inputs | outputs |
|---|---|---|
| `image_encoder.onnx` | `pixel_values [B, 3, H, W]` | `image_embeds [B, E]` (L2-normalised), `image_tokens [B, 1 + P, Dv]` |
| `text_encoder.onnx` | `input_ids [B, L]`, `attention_mask [B, L]` | `text_embeds [B, E]` (normalised), `text_states [B, L, D]` |
| `itm_scorer.onnx` | `image_tokens [B, 1 + P, Dv]`, `text_states [B, L, D]`, `text_attention_mask [B, L]` | `itm_logits [B, 2]` |

`image_embeds @ text_embeds.T` ranks candidates (divide by the model's temperature for logits); the ITM scorer
re-ranks aligned (image `b`, text `b`) pairs from the encoders' token outputs, as `cclm_hf.retrieval.itm_rerank`
does. The image size is fixed by the config (Swin's window partition is traced for it). The ITM scorer is exported
for folders whose model has the matching head (retrieval and pre-training folders). Not exported: the
classification head, the pre-training losses and heads, hard-negative sampling and the processor (tokenizer and
image preprocessing stay in Python; the processor files are saved next to the graphs).

Exporter: `torch.onnx.export(..., dynamo=True)`, the `torch.export`-based exporter (the TorchScript exporter is
deprecated and bakes shape-dependent Python branches in as constants). The model is loaded with eager attention for
the export: with SDPA, the decomposition of transformers' Swin attention fails for a dynamic batch; eager and SDPA
attention compute the same function.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

from . import __version__
from .configuration_cclm import CCLMConfig
from .errors import CCLMUserError
from .modeling_cclm import CCLMForImageTextRetrieval, CCLMModel


logger = logging.get_logger(__name__)

_WITH_MATCHING_HEAD = ("CCLMForImageTextRetrieval", "CCLMForPreTraining")
_EXPORTABLE = (*_WITH_MATCHING_HEAD, "CCLMModel")


class ImageEncoderForOnnx(nn.Module):
    """`pixel_values -> (image_embeds, image_tokens)`: the Swin tower and the vision projection."""

    def __init__(self, model: CCLMModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model.get_image_features(pixel_values)
        return F.normalize(outputs.pooler_output, dim=-1), outputs.last_hidden_state


class TextEncoderForOnnx(nn.Module):
    """`(input_ids, attention_mask) -> (text_embeds, text_states)`: the text-only layers and the text projection."""

    def __init__(self, model: CCLMModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model.get_text_features(input_ids, attention_mask)
        return F.normalize(outputs.pooler_output, dim=-1), outputs.last_hidden_state


class ITMScorerForOnnx(nn.Module):
    """`(image_tokens, text_states, text_attention_mask) -> itm_logits`: the fusion layers and the matching head."""

    def __init__(self, model: CCLMForImageTextRetrieval):
        super().__init__()
        self.model = model

    def forward(
        self, image_tokens: torch.Tensor, text_states: torch.Tensor, text_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.model.get_itm_logits(image_tokens, text_states, text_attention_mask)


@dataclass
class OnnxGraph:
    """One exported graph: its file, input and output names, and the check against PyTorch."""

    file: str
    inputs: list[str]
    outputs: list[str]
    max_abs_diff: float | None = None


@dataclass
class OnnxExport:
    """What `export_onnx` wrote (also saved as `onnx_export.json`)."""

    source: str
    model_class: str
    image_size: int
    opset: int
    graphs: dict[str, OnnxGraph] = field(default_factory=dict)
    cclm_hf_version: str = __version__


def export_onnx(folder: str | Path, output_dir: str | Path, *, opset: int = 18, verify: bool = True) -> OnnxExport:
    """Export the encoders (and the ITM scorer, when the folder's model has one) of a saved CCLM folder.

    With `verify`, each graph is run with onnxruntime on new random inputs (another batch size and text length than
    the export's) and compared with the PyTorch model; `OnnxGraph.max_abs_diff` records the largest difference.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; fail here with the install hint)
    except ImportError as error:
        raise CCLMUserError("ONNX export needs onnx and onnxruntime: pip install 'cclm-hf[onnx]'") from error
    folder, output_dir = Path(folder), Path(output_dir)
    model = load_for_export(folder)
    with_matching_head = isinstance(model, CCLMForImageTextRetrieval)
    cclm, config = model.base_model, model.config
    output_dir.mkdir(parents=True, exist_ok=True)

    samples = _sample_inputs(cclm, batch_size=2, length=11, seed=0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("sequence", min=1, max=config.text_config.max_position_embeddings - 2)
    graphs = {
        "image_encoder": (
            ImageEncoderForOnnx(cclm),
            OnnxGraph("image_encoder.onnx", ["pixel_values"], ["image_embeds", "image_tokens"]),
            {"pixel_values": {0: batch}},
        ),
        "text_encoder": (
            TextEncoderForOnnx(cclm),
            OnnxGraph("text_encoder.onnx", ["input_ids", "attention_mask"], ["text_embeds", "text_states"]),
            {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
        ),
    }
    if with_matching_head:
        graphs["itm_scorer"] = (
            ITMScorerForOnnx(model),
            OnnxGraph("itm_scorer.onnx", ["image_tokens", "text_states", "text_attention_mask"], ["itm_logits"]),
            {
                "image_tokens": {0: batch},
                "text_states": {0: batch, 1: length},
                "text_attention_mask": {0: batch, 1: length},
            },
        )

    model_class = (config.architectures or ["CCLMModel"])[0]
    export = OnnxExport(source=str(folder), model_class=model_class, image_size=config.image_size, opset=opset)
    checks = _sample_inputs(cclm, batch_size=3, length=5, seed=1)
    for name, (module, graph, dynamic_shapes) in graphs.items():
        module.eval()
        inputs = tuple(samples[key] for key in graph.inputs)
        logger.info("Exporting %s to %s", name, output_dir / graph.file)
        with warnings.catch_warnings():
            # one Dim object shared by several inputs is the intended constraint, not a naming conflict
            warnings.filterwarnings("ignore", message=".*The axis name: .* will not be used", category=UserWarning)
            torch.onnx.export(
                module,
                inputs,
                str(output_dir / graph.file),
                input_names=graph.inputs,
                output_names=graph.outputs,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        if verify:
            graph.max_abs_diff = max_abs_difference(module, output_dir / graph.file, [checks[k] for k in graph.inputs])
            logger.info("%s: onnxruntime vs PyTorch max abs difference %.2e", name, graph.max_abs_diff)
        export.graphs[name] = graph

    if (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file():
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(folder).save_pretrained(output_dir)
    (output_dir / "onnx_export.json").write_text(json.dumps(asdict(export), indent=2) + "\n", encoding="utf-8")
    return export


def load_for_export(folder: str | Path) -> CCLMModel | CCLMForImageTextRetrieval:
    """The model of a saved folder as it is exported, with eager attention: retrieval and pre-training folders as
    `CCLMForImageTextRetrieval` (encoders and matching head; a pre-training folder's MLM and box heads are left
    out), base folders as `CCLMModel`; other heads are refused."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CCLMUserError(f"{folder}: not a saved model folder (no config.json)")
    model_class = (CCLMConfig.from_pretrained(folder).architectures or ["CCLMModel"])[0]
    if model_class not in _EXPORTABLE:
        raise CCLMUserError(
            f"{folder}: {model_class} is not exported to ONNX (supported: {', '.join(_EXPORTABLE)}; the encoders of "
            "a classification model are not trained for retrieval)"
        )
    loader = CCLMForImageTextRetrieval if model_class in _WITH_MATCHING_HEAD else CCLMModel
    return loader.from_pretrained(folder, attn_implementation="eager").eval()


@torch.no_grad()
def max_abs_difference(module: nn.Module, onnx_path: str | Path, inputs: list[torch.Tensor]) -> float:
    """Run `onnx_path` with onnxruntime and `module` with PyTorch on `inputs`; the largest difference of any output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {node.name: tensor.numpy() for node, tensor in zip(session.get_inputs(), inputs, strict=True)}
    expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = session.run(None, feeds)
    return max(float(np.abs(a - e.numpy()).max()) for a, e in zip(actual, expected, strict=True))


@torch.no_grad()
def _sample_inputs(cclm: CCLMModel, batch_size: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random images and padded texts, and the encoders' outputs for them (the ITM scorer's inputs)."""
    config = cclm.config
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.text_config.vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, length // 2 :] = 0  # a padded row exercises the masks
    input_ids[attention_mask == 0] = config.text_config.pad_token_id
    pixel_values = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
    return {
        "pixel_values": pixel_values,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "image_tokens": cclm.get_image_features(pixel_values).last_hidden_state,
        "text_states": cclm.get_text_features(input_ids, attention_mask).last_hidden_state,
        "text_attention_mask": attention_mask,
    }


__all__ = [
    "ITMScorerForOnnx",
    "ImageEncoderForOnnx",
    "OnnxExport",
    "OnnxGraph",
    "TextEncoderForOnnx",
    "export_onnx",
    "load_for_export",
    "max_abs_difference",
]
