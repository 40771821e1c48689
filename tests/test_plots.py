"""Figures: valid PNG files with what they should show, drawn headless; the confusion matrix counts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cclm_hf.errors import CCLMUserError
from cclm_hf.plots import confusion_matrix, plot_confusion_matrix, plot_loss_curve, plot_recall_per_language


def _png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn, not a blank canvas
    return pixels


def test_recall_per_language_from_a_metrics_json(tmp_path):
    metrics = {
        "task": "xflickrco",
        "setting": "zero_shot",
        "languages": {lang: {"img_r1": 0.1 * i, "txt_r1": 0.05 * i} for i, lang in enumerate(["de", "es", "ja"], 1)},
    }
    path = plot_recall_per_language(metrics, tmp_path / "figures" / "recall.png", chance=0.001, title="xF&C")
    _png(path)


def test_loss_curve_prefers_the_per_loss_breakdown(tmp_path):
    history = [{"step": step, "loss": 3.0 / step, "image/itc_loss": 2.0 / step} for step in range(1, 20)]
    history.append({"step": 19, "train_loss": 1.0, "train_runtime": 3.0})
    _png(plot_loss_curve(history, tmp_path / "loss.png"))
    plain = [{"step": step, "loss": 1.0 / step} for step in range(1, 5)] + [{"step": 4, "eval_loss": 0.5}]
    _png(plot_loss_curve(plain, tmp_path / "plain.png"))
    # a run shorter than one logging interval still gets its figure, saying so
    with Image.open(plot_loss_curve([{"step": 1, "learning_rate": 0.1}], tmp_path / "none.png")) as image:
        assert image.format == "PNG"


def test_confusion_matrix_counts_pairs():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    brute_force = np.zeros((3, 3), dtype=int)
    for label, prediction in zip(labels, predictions, strict=True):
        brute_force[label, prediction] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), brute_force)
    with pytest.raises(CCLMUserError, match="label 3 is not a class index"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(CCLMUserError, match="2 labels but 1 predictions"):
        confusion_matrix([0, 1], [0], 3)


def test_xvnli_confusion_matrix_png(tmp_path):
    labels = [0, 0, 1, 1, 2, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0, 2]
    counts = plot_confusion_matrix(labels, predictions, tmp_path / "xvnli.png", title="XVNLI ar")
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    _png(tmp_path / "xvnli.png")


def test_plots_leave_the_pyplot_state_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    figures = plt.get_fignums()
    plot_confusion_matrix([0, 1], [1, 1], tmp_path / "c.png")
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures
