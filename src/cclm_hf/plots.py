"""PNG figures of training and evaluation results: loss curves, metrics per language, confusion matrices.

Headless: figures are drawn on matplotlib's Agg canvas without `pyplot`, so nothing needs a display and the
caller's matplotlib backend is left alone. matplotlib is optional (`pip install 'cclm-hf[plots]'`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CCLMUserError


# labels of the metric keys the demo and the benchmark recipes write
METRIC_LABELS = {
    "t2i_r1": "t2i R@1",
    "t2i_r5": "t2i R@5",
    "i2t_r1": "i2t R@1",
    "i2t_r5": "i2t R@5",
    "t2i_r1_itm": "t2i R@1 ITM",
    "i2t_r1_itm": "i2t R@1 ITM",
    **{f"img_r{k}": f"IR R@{k}" for k in (1, 5, 10)},
    **{f"txt_r{k}": f"TR R@{k}" for k in (1, 5, 10)},
    "r_mean": "mean recall",
    "accuracy": "accuracy",
}


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise CCLMUserError("plots need matplotlib: pip install 'cclm-hf[plots]'") from error
    return Figure(figsize=(width, height))


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def plot_loss_curve(log_history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss against optimizer step from a `Trainer`'s `state.log_history`.

    Plots the per-loss breakdown of `CCLMPretrainingTrainer` (`image/itc_loss`, `parallel/ttm_loss`, ...) when the
    log has one, else `loss` and `eval_loss`.
    """
    keys = sorted(
        {
            key
            for record in log_history
            for key, value in record.items()
            if key.endswith("loss") and key != "train_loss" and isinstance(value, int | float)
        }
    )
    keys = [key for key in keys if "/" in key] or keys
    figure = _figure(7, 4)
    axis = figure.add_subplot()
    for key in keys:
        points = [(record["step"], record[key]) for record in log_history if key in record]
        axis.plot(*zip(*points, strict=True), label=key)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    if keys:
        axis.legend(fontsize=7, ncol=2)
    else:  # a run shorter than one logging interval
        axis.text(0.5, 0.5, "no loss logged yet", ha="center", va="center", transform=axis.transAxes)
    return _save(figure, path)


def plot_recall_per_language(
    metrics: Mapping[str, Any],
    path: str | Path,
    metric_keys: Sequence[str] | None = None,
    chance: float | None = None,
    title: str | None = None,
) -> Path:
    """Grouped bars of `metrics["languages"][lang][key]` (recall@k, accuracy: values in [0, 1]) per language.

    Args:
        metrics: a `metrics.json` of the demo or of a benchmark recipe.
        metric_keys: the metrics to draw; defaults to those every language has.
        chance: draws a dashed line at this value (e.g. 1 / gallery size for R@1).
    """
    languages = list(metrics["languages"])
    if not languages:
        raise CCLMUserError("metrics have no languages to plot")
    if metric_keys is None:
        shared = set.intersection(*(set(metrics["languages"][language]) for language in languages))
        metric_keys = [key for key in metrics["languages"][languages[0]] if key in shared]
    figure = _figure(max(7, 0.9 * len(languages) * max(1, len(metric_keys)) / 2), 4)
    axis = figure.add_subplot()
    width = 0.8 / len(metric_keys)
    for offset, key in enumerate(metric_keys):
        values = [metrics["languages"][language][key] for language in languages]
        positions = [i + (offset - (len(metric_keys) - 1) / 2) * width for i in range(len(languages))]
        axis.bar(positions, values, width, label=METRIC_LABELS.get(key, key))
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    axis.set_xticks(range(len(languages)), languages)
    axis.set_ylim(0, 1.15)  # room for the legend above the bars
    axis.set_ylabel("score")
    if title:
        axis.set_title(title)
    axis.legend(fontsize=8, ncol=min(5, len(metric_keys) + (chance is not None)), loc="upper center")
    return _save(figure, path)


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """`[num_classes, num_classes]` counts: row = true label, column = prediction."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise CCLMUserError(f"{labels.size} labels but {predictions.size} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        outside = values[(values < 0) | (values >= num_classes)]
        if outside.size:
            raise CCLMUserError(f"{name} {int(outside[0])} is not a class index in [0, {num_classes})")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def plot_confusion_matrix(
    labels: Sequence[int],
    predictions: Sequence[int],
    path: str | Path,
    class_names: Sequence[str] = ("entailment", "neutral", "contradiction"),
    title: str | None = None,
) -> np.ndarray:
    """Confusion matrix (row-normalised colours, counts written in the cells), e.g. of XVNLI predictions.

    Returns the counts (see `confusion_matrix`).
    """
    counts = confusion_matrix(labels, predictions, len(class_names))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = _figure(1.4 * len(class_names) + 2, 1.2 * len(class_names) + 1.5)
    axis = figure.add_subplot()
    image = axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(len(class_names)):
        for column in range(len(class_names)):
            color = "white" if rates[row, column] > 0.5 else "black"
            axis.text(column, row, str(counts[row, column]), ha="center", va="center", color=color)
    axis.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    figure.colorbar(image, ax=axis, label="share of the true class")
    _save(figure, path)
    return counts


__all__ = ["METRIC_LABELS", "confusion_matrix", "plot_confusion_matrix", "plot_loss_curve", "plot_recall_per_language"]
