"""Model cards (`README.md`) of the folders this package writes: converted checkpoints, fine-tuned and demo models.

A card is a `huggingface_hub.ModelCard` rendered from the template `templates/model_card.md` with `ModelCardData`
metadata. What it says about a folder comes from the files beside the weights:

- `conversion.json` (`cclm-hf convert`): source file and sha256, command, what the conversion did, the reload check;
- `metrics.json` (the benchmark recipes): `{"task", "setting", "model", "languages": {lang: {metric: value}},
  "average": {...}, "counts": {...}}`, values as fractions -> `model-index` eval results, and a table with the
  paper's number beside ours (`cclm_hf.paper_results`);
- `training_args.json` (optional, `TrainingArguments.to_dict()`): the fine-tuning arguments.

`validate_model_card` checks a card offline the way the Hub's metadata validation does (front matter, license,
languages, `model-index`); `write_model_card` never writes a card that fails it.
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import modeling_cclm
from .configuration_cclm import CCLMConfig
from .errors import CCLMUserError
from .modeling_cclm import CCLMPreTrainedModel
from .paper_results import PAPER_MODELS, paper_numbers


# Languages of the image captions CCLM-3M/4M were pre-trained on (CC3M with UC2 translations; SBU, VG and COCO
# translated into the same languages); the WikiMatrix parallel text adds more, in an undocumented subset.
CCLM_PRETRAINING_LANGUAGES = ("en", "de", "fr", "cs", "ja", "zh")
CCLM_TAGS = ("cclm", "vision-language", "multilingual", "image-text-retrieval", "cclm-hf")

_PIPELINE_TAGS = {"CCLMForImageTextRetrieval": "zero-shot-image-classification"}

# task id of metrics.json -> (Hub task type, task name, dataset name)
_TASKS = {
    "xvnli": ("visual-entailment", "Visual natural language inference", "XVNLI (IGLUE)"),
    "xgqa": ("visual-question-answering", "Visual question answering", "xGQA (IGLUE)"),
    "vqa": ("visual-question-answering", "Visual question answering", "VQA v2"),
    "marvl": ("visual-reasoning", "Visual reasoning", "MaRVL (IGLUE)"),
    "nlvr2": ("visual-reasoning", "Visual reasoning", "NLVR2"),
    "xflickrco": ("image-text-retrieval", "Image-text retrieval", "xFlickr&CO (IGLUE)"),
    "wit": ("image-text-retrieval", "Image-text retrieval", "WIT (IGLUE)"),
    "multi30k": ("image-text-retrieval", "Image-text retrieval", "Multi30K"),
    "mscoco": ("image-text-retrieval", "Image-text retrieval", "multilingual MSCOCO"),
    "flickr30k": ("image-text-retrieval", "Image-text retrieval", "Flickr30K (1K test)"),
}
_METRIC_NAMES = {
    "accuracy": "accuracy",
    "r_mean": "mean recall (R@1/5/10 both ways)",
    **{f"img_r{k}": f"text->image R@{k} (IR)" for k in (1, 5, 10)},
    **{f"txt_r{k}": f"image->text R@{k} (TR)" for k in (1, 5, 10)},
}
_TRAINING_ARGUMENTS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "lr_scheduler_type",
    "max_grad_norm",
    "bf16",
    "fp16",
    "seed",
)

_INTENDED_USE = {
    "CCLMForImageTextRetrieval": [
        "multilingual image-text retrieval: rank images for a caption or captions for an image with the contrastive "
        "embeddings, then re-rank the top candidates with the matching head (`cclm_hf.retrieval`)",
        "zero-shot image classification with labels in any of the model's languages (transformers' "
        "`zero-shot-image-classification` pipeline)",
    ],
    "CCLMForSequenceClassification": [
        "classification of (image, text) pairs, e.g. visual natural language inference (XVNLI: entailment, "
        "neutral, contradiction)",
    ],
    "CCLMForPreTraining": ["continued pre-training with CCLM's losses (ITC/TTC, ITM/TTM, conditional MLM, boxes)"],
    "CCLMModel": ["image and text embeddings in a shared multilingual space; a starting point for task heads"],
}
# what the model learnt from: the released checkpoints' data, unless the card describes how this model was produced
# (the demo's synthetic shapes, a user's own pre-training)
_RELEASED_DATA_LIMITATION = (
    "pre-trained on web alt-text (CC3M, SBU) and COCO / Visual Genome captions, most of them machine-translated: it "
    "inherits their social biases and translation errors, and is weaker in languages it saw less"
)
_OWN_DATA_LIMITATION = (
    'trained only on the data described under "How this model was produced" below: expect nothing of it beyond '
    "what that data shows"
)
_SAFETY_LIMITATION = "not evaluated for safety-critical uses, surveillance, or decisions about people"

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

_ORIGINAL_LICENSE = (
    "The original CCLM code (github.com/zengyan-97/CCLM) is released under the BSD-3-Clause license (Copyright (c) "
    "2022, ByteDance Inc.); the authors state no separate license for the released checkpoints, so this card "
    "uses the code's license for weights derived from them. Check with the authors before commercial use. The "
    "cclm-hf code that converted and wrote this folder is Apache-2.0."
)
_LICENSES = {
    "bsd-3-clause": _ORIGINAL_LICENSE,
    "apache-2.0": "Apache-2.0, the license of the cclm-hf code that trained and wrote this folder.",
}
_NO_LICENSE = (
    "No license is recorded for this folder. Weights derived from the original CCLM checkpoints inherit their terms "
    "(BSD-3-Clause code license, no separate weights license stated); set one with `cclm-hf card FOLDER --license "
    "ID` before publishing."
)
# the Hub knows its license ids; offline, an id is checked for its shape (lower case, digits, ".", "+", "-")
_LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_SPECIAL_LANGUAGES = ("multilingual", "code")
_PROVENANCE_HEADING = "## How this model was produced"


class ModelCardError(CCLMUserError, ValueError):
    """A card, or a file a card is made from, is invalid; the message names the file and every problem."""


def render_model_card(
    model: CCLMPreTrainedModel,
    provenance: str | None = None,
    repo: str = "path/to/this/folder",
    *,
    conversion: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    training_args: dict[str, Any] | None = None,
    license: str | None = None,
    model_name: str | None = None,
) -> ModelCard:
    """The card of a saved `model`.

    Args:
        model: the model of the folder (its class and config; a model on the `meta` device is enough).
        provenance: markdown for "How this model was produced" (e.g. the demo's training summary).
        repo: the name the usage snippet loads the model by.
        conversion: the contents of `conversion.json`; adds the conversion and parity sections, the pre-training
            languages and the original's license (unless `license` is given).
        metrics: the contents of a benchmark `metrics.json` (see `read_metrics`); adds `model-index` eval results
            and the evaluation table.
        training_args: `TrainingArguments.to_dict()` of the fine-tuning run.
        license: a Hub license id; defaults to the original's `bsd-3-clause` for converted checkpoints.
        model_name: the name in `model-index`; defaults to `metrics["model_name"]` or the repo name.
    """
    name = type(model).__name__
    license = license or ("bsd-3-clause" if conversion else None)
    languages = None
    if metrics:
        languages = sorted(language for language in metrics["languages"] if _LANGUAGE_CODE.match(language))
    elif conversion:
        languages = list(CCLM_PRETRAINING_LANGUAGES)
    evaluation, eval_results = _evaluation(metrics) if metrics else (None, None)
    card_data = ModelCardData(
        language=languages,
        license=license,
        library_name="transformers",
        tags=list(CCLM_TAGS),
        pipeline_tag=_PIPELINE_TAGS.get(name),
        model_name=(model_name or metrics.get("model_name") or Path(repo).name) if metrics else None,
        eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data,
        template_str=resources.files("cclm_hf").joinpath("templates/model_card.md").read_text(encoding="utf-8"),
        title=f"CCLM ({name})",
        architecture=_architecture(model),
        intended_use=[
            *_INTENDED_USE.get(name, _INTENDED_USE["CCLMModel"]),
            _OWN_DATA_LIMITATION if provenance else _RELEASED_DATA_LIMITATION,
            _SAFETY_LIMITATION,
        ],
        provenance=provenance.strip() if provenance else None,
        conversion=conversion,
        evaluation=evaluation,
        training_args=[(key, training_args[key]) for key in _TRAINING_ARGUMENTS if key in (training_args or {})],
        usage=_USAGE.get(name, _DEFAULT_USAGE).format(repo=repo),
        license_text=_LICENSES.get(license, f"`{license}`." if license else _NO_LICENSE),
    )


def write_model_card(
    model: CCLMPreTrainedModel, output_dir: str | Path, provenance: str | None = None, **kwargs
) -> Path:
    """Render (see `render_model_card` for `kwargs`), validate and write `output_dir/README.md`."""
    path = Path(output_dir) / "README.md"
    card = render_model_card(model, provenance, **kwargs)
    validate_model_card(str(card), source=str(path))
    path.write_text(str(card), encoding="utf-8")
    return path


def write_folder_card(
    folder: str | Path, license: str | None = None, repo: str | None = None, model_name: str | None = None
) -> Path:
    """(Re)write the card of a saved CCLM folder from its `config.json` and the `conversion.json`, `metrics.json`
    and `training_args.json` beside it. The "How this model was produced" section of an existing card is kept."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelCardError(f"{folder}: not a model folder (no config.json)")
    config_dict = _read_json(config_path)
    if config_dict.get("model_type") != CCLMConfig.model_type:
        raise ModelCardError(f"{config_path}: model_type {config_dict.get('model_type')!r} is not a CCLM model")
    config = CCLMConfig.from_pretrained(folder)
    model_class = getattr(modeling_cclm, (config.architectures or ["CCLMModel"])[0], None)
    if not (isinstance(model_class, type) and issubclass(model_class, CCLMPreTrainedModel)):
        raise ModelCardError(f"{config_path}: architecture {config.architectures} is not a CCLM model class")
    with torch.device("meta"):  # the card needs the class and the parameter count, not the weights
        model = model_class(config)

    def optional(name: str) -> dict[str, Any] | None:
        return _read_json(folder / name) if (folder / name).is_file() else None

    metrics = read_metrics(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
    return write_model_card(
        model,
        folder,
        _existing_provenance(folder / "README.md"),
        repo=repo or folder.name,
        conversion=optional("conversion.json"),
        metrics=metrics,
        training_args=optional("training_args.json"),
        license=license,
        model_name=model_name,
    )


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check a benchmark `metrics.json`; errors name the file and the field."""
    path = Path(path)
    metrics = _read_json(path)
    problems = [f"missing field {key!r}" for key in ("task", "setting", "languages") if key not in metrics]
    for group, values in [*metrics.get("languages", {}).items(), ("average", metrics.get("average", {}))]:
        if not isinstance(values, dict):
            problems.append(f"{group}: expected {{metric: value}}, got {values!r}")
            continue
        for metric, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                problems.append(f"{group}.{metric} = {value!r} is not a fraction in [0, 1]")
    if problems:
        raise ModelCardError(f"{path}: {'; '.join(problems)}")
    return metrics


def validate_model_card(content: str, source: str = "README.md") -> ModelCard:
    """Check a card offline as the Hub's metadata validation would; raise `ModelCardError` listing every problem.

    Checks: a YAML front matter that is a mapping; `library_name`; `license` (an id, or `other` with
    `license_name` and `license_link`); `language` codes; `tags` strings; a `model-index` that huggingface_hub parses
    into eval results with a model name and numeric values; a title in the body.
    """
    match = re.match(r"^---\r?\n(.*?)\r?\n---\r?\n(.*)$", content, flags=re.DOTALL)
    if match is None:
        raise ModelCardError(f"{source}: no YAML front matter (--- ... ---) at the top of the card")
    problems = []
    try:
        card = ModelCard(content)
    except Exception as error:  # yaml errors, a non-mapping block, an unparsable model-index
        raise ModelCardError(f"{source}: invalid metadata: {error}") from error
    data = card.data.to_dict()
    if data.get("library_name") != "transformers":
        problems.append(f"library_name is {data.get('library_name')!r}, not 'transformers'")
    license = data.get("license")
    if license is not None and (not isinstance(license, str) or not _LICENSE_ID.match(license)):
        problems.append(f"license {license!r} is not a license id")
    if license == "other" and not (data.get("license_name") and data.get("license_link")):
        problems.append("license 'other' needs license_name and license_link")
    languages = data.get("language") or []
    for language in [languages] if isinstance(languages, str) else languages:
        if not isinstance(language, str) or not (_LANGUAGE_CODE.match(language) or language in _SPECIAL_LANGUAGES):
            problems.append(f"language {language!r} is not an ISO 639 code")
    if not all(isinstance(tag, str) for tag in data.get("tags") or []):
        problems.append("tags must be strings")
    for result in card.data.eval_results or []:
        if not card.data.model_name:
            problems.append("model-index has no model name")
            break
        value = result.metric_value
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            problems.append(f"model-index: {result.dataset_name} {result.metric_type} = {value!r} is not a number")
    if not re.search(r"^# \S", match.group(2), flags=re.MULTILINE):
        problems.append("the card has no '# title'")
    if problems:
        raise ModelCardError(f"{source}: {'; '.join(problems)}")
    return card


def _architecture(model: CCLMPreTrainedModel) -> list[str]:
    config = model.config
    text, vision = config.text_config, config.vision_config
    parameters = sum(parameter.numel() for parameter in model.parameters())
    return [
        f"`{type(model).__name__}`, {parameters / 1e6:.1f} M parameters",
        f"Swin: {vision.image_size} px, patch {vision.patch_size}, window {vision.window_size}, embed dim "
        f"{vision.embed_dim}, depths {list(vision.depths)}",
        f"text: {text.num_text_layers} text-only + {text.num_fusion_layers} fusion layers, width {text.hidden_size}, "
        f"vocabulary {text.vocab_size}, positions `{text.position_id_scheme}`",
        f"contrastive space: {config.projection_dim}",
    ]


def _evaluation(metrics: dict[str, Any]) -> tuple[dict[str, Any], list[EvalResult]]:
    task, setting = metrics["task"], metrics["setting"]
    task_type, task_name, dataset_name = _TASKS.get(task, (task, task, task))
    paper = paper_numbers(task, setting)
    paper_models = [model for model in PAPER_MODELS if model in paper]
    rows, eval_results = [], []
    groups = [*metrics["languages"].items()] + ([("average", metrics["average"])] if metrics.get("average") else [])
    for group, values in groups:
        for metric, value in values.items():
            reported = [paper[model].get(group, {}).get(metric) for model in paper_models]
            rows.append(
                {
                    "language": group,
                    "metric": _METRIC_NAMES.get(metric, metric),
                    "ours": f"{100 * value:.2f}",
                    "paper": ["–" if number is None else f"{number:.2f}" for number in reported],
                }
            )
            eval_results.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=task,
                    dataset_name=f"{dataset_name}, {'mean over languages' if group == 'average' else group}",
                    dataset_config=None if group == "average" else group,
                    dataset_split=metrics.get("split"),
                    metric_type=metric,
                    metric_name=_METRIC_NAMES.get(metric, metric),
                    metric_value=value,
                )
            )
    evaluation = {
        "task_name": task_name,
        "dataset_name": dataset_name,
        "setting": setting,
        "model": metrics.get("model", "not recorded"),
        "paper_models": paper_models,
        "rows": rows,
        "counts": metrics.get("counts"),
    }
    return evaluation, eval_results


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelCardError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _existing_provenance(path: Path) -> str | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    start = text.find(_PROVENANCE_HEADING + "\n")
    if start < 0:
        return None
    body = text[start + len(_PROVENANCE_HEADING) :]
    end = body.find("\n## ")
    return (body if end < 0 else body[:end]).strip() or None


__all__ = [
    "CCLM_PRETRAINING_LANGUAGES",
    "ModelCardError",
    "read_metrics",
    "render_model_card",
    "validate_model_card",
    "write_folder_card",
    "write_model_card",
]
