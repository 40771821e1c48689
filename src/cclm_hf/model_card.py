"""Model cards (`README.md`) for the folders this package writes: converted checkpoints and demo models."""

from __future__ import annotations

from pathlib import Path

from .modeling_cclm import CCLMPreTrainedModel


_PIPELINE_TAGS = {"CCLMForImageTextRetrieval": "zero-shot-image-classification"}

_USAGE = {
    "CCLMForImageTextRetrieval": """\
```python
import torch
from PIL import Image
from transformers import AutoProcessor
from cclm_hf import CCLMForImageTextRetrieval

processor = AutoProcessor.from_pretrained("{repo}")
model = CCLMForImageTextRetrieval.from_pretrained("{repo}").eval()
inputs = processor(images=Image.open("photo.jpg"), text=["a dog", "ein Hund", "一只狗"], padding=True,
                   return_tensors="pt")
with torch.no_grad():
    print(model(**inputs).logits_per_image.softmax(dim=-1))
```""",
    "CCLMForSequenceClassification": """\
```python
import torch
from PIL import Image
from transformers import AutoModelForSequenceClassification, AutoProcessor
import cclm_hf  # registers the CCLM classes

processor = AutoProcessor.from_pretrained("{repo}")
model = AutoModelForSequenceClassification.from_pretrained("{repo}").eval()
inputs = processor(images=Image.open("premise.jpg"), text="two dogs play in the snow", return_tensors="pt")
with torch.no_grad():
    print(model(**inputs).logits)
```""",
}
_DEFAULT_USAGE = """\
```python
from transformers import AutoModel, AutoProcessor
import cclm_hf  # registers the CCLM classes

processor = AutoProcessor.from_pretrained("{repo}")
model = AutoModel.from_pretrained("{repo}")
```"""


def render_model_card(model: CCLMPreTrainedModel, provenance: str, repo: str = "path/to/this/folder") -> str:
    """The card of a saved `model`: metadata, architecture, how it was produced (`provenance`), usage, citation."""
    name = type(model).__name__
    config = model.config
    text, vision = config.text_config, config.vision_config
    tags = ["cclm", "vision-language", "multilingual", "image-text-retrieval", "cclm-hf"]
    pipeline_tag = _PIPELINE_TAGS.get(name)
    metadata = ["---", "library_name: transformers", "tags:"] + [f"- {tag}" for tag in tags]
    if pipeline_tag:
        metadata.append(f"pipeline_tag: {pipeline_tag}")
    metadata.append("---")
    parameters = sum(parameter.numel() for parameter in model.parameters())
    usage = _USAGE.get(name, _DEFAULT_USAGE).format(repo=repo)
    return "\n".join(
        [
            *metadata,
            "",
            f"# CCLM ({name})",
            "",
            "CCLM (Cross-View Language Modeling, Zeng et al., ACL 2023) is a multilingual vision-language model: a Swin "
            "image encoder and an XLM-R-style text stack whose upper layers cross-attend to the other view (image "
            "patches, or the other sentence of a parallel pair). This folder was written by the `cclm-hf` package: "
            "install it (`pip install cclm-hf`), or load the folder with `trust_remote_code=True`.",
            "",
            "## Architecture",
            "",
            f"- `{name}`, {parameters / 1e6:.1f} M parameters",
            f"- Swin: {vision.image_size} px, patch {vision.patch_size}, window {vision.window_size}, "
            f"embed dim {vision.embed_dim}, depths {list(vision.depths)}",
            f"- text: {text.num_text_layers} text-only + {text.num_fusion_layers} fusion layers, width "
            f"{text.hidden_size}, vocabulary {text.vocab_size}, positions `{text.position_id_scheme}`",
            f"- contrastive space: {config.projection_dim}",
            "",
            "## How this model was produced",
            "",
            provenance,
            "",
            "## Usage",
            "",
            usage,
            "",
            "## Citation",
            "",
            "```bibtex",
            "@inproceedings{zeng2023cclm,",
            "  title={Cross-View Language Modeling: Towards Unified Cross-Lingual Cross-Modal Pre-training},",
            "  author={Zeng, Yan and Zhou, Wangchunshu and Luo, Ao and Cheng, Ziming and Zhang, Xinsong},",
            "  booktitle={ACL},",
            "  year={2023}",
            "}",
            "```",
            "",
        ]
    )


def write_model_card(model: CCLMPreTrainedModel, output_dir: str | Path, provenance: str) -> Path:
    path = Path(output_dir) / "README.md"
    path.write_text(render_model_card(model, provenance), encoding="utf-8")
    return path
