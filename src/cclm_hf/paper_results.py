"""CCLM's reported numbers, to print beside our own (model cards, metrics tables).

Transcribed from the CCLM paper v1 tables (Table 1: IGLUE; Table 2: Multi30K / multilingual MSCOCO) as collected in
the project's `evaluation.md` (sections 1.1 and 1.3), in percent as printed. Only CCLM-base 3M and 4M numbers exist
there; the paper gives IGLUE numbers as means over the target languages (English excluded), and Multi30K / MSCOCO
numbers per language.

Keys follow the `metrics.json` of the benchmark recipes: `(task, setting)`, then the paper's model, then
`"average"` or a language, then the metric: `accuracy` (XVNLI, xGQA, MaRVL), `img_r1` / `txt_r1` (text->image "IR"
and image->text "TR" recall@1, the names of `cclm_hf.evaluation.retrieval_metrics`), `r_mean` (mean of the six
recalls). Multi30K / MSCOCO settings: `zero_shot` (fine-tuned on English only), `single_language`, `all_language`.
"""

from __future__ import annotations


PAPER_MODELS = ("CCLM-base 3M", "CCLM-base 4M")

# IGLUE's main table: (task, metric of the `average` of metrics.json, column title), in the paper's order.
IGLUE_COLUMNS = (
    ("xvnli", "accuracy", "XVNLI"),
    ("xgqa", "accuracy", "xGQA"),
    ("marvl", "accuracy", "MaRVL"),
    ("xflickrco", "img_r1", "xF&C IR"),
    ("xflickrco", "txt_r1", "xF&C TR"),
    ("wit", "img_r1", "WIT IR"),
    ("wit", "txt_r1", "WIT TR"),
)

# Translate-test with the English-only models of the IGLUE paper (test sets machine-translated to English), in the
# IGLUE column order (evaluation.md 1.1, `e-bug/iglue/results/*_0.mt.csv`): the bar CCLM's zero-shot transfer clears.
IGLUE_TRANSLATE_TEST = {
    "UNITER": (73.65, 50.62, 61.92, 41.04, 37.49, 15.43, 16.01),
    "ViLBERT": (73.45, 50.33, 62.39, 36.97, 33.21, 15.40, 16.93),
    "VisualBERT": (74.12, 48.72, 62.35, 41.64, 36.44, 15.36, 15.75),
    "VL-BERT": (73.86, 49.78, 64.16, 38.18, 31.84, 15.11, 16.09),
    "LXMERT": (72.57, 48.08, 62.51, 34.02, 26.66, 14.28, 14.85),
}


def _iglue(*values: float | None) -> dict[str, dict[str, dict[str, float]]]:
    """`values` in the order of `IGLUE_COLUMNS` -> per-task entries."""
    tasks: dict[str, dict[str, dict[str, float]]] = {}
    for (task, metric, _), value in zip(IGLUE_COLUMNS, values, strict=True):
        if value is not None:
            tasks.setdefault(task, {}).setdefault("average", {})[metric] = value
    return tasks


def _mean_recall(multi30k: tuple[float, ...], mscoco: tuple[float, ...]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        "multi30k": {lang: {"r_mean": value} for lang, value in zip(("en", "de", "fr", "cs"), multi30k, strict=True)},
        "mscoco": {lang: {"r_mean": value} for lang, value in zip(("en", "zh", "ja"), mscoco, strict=True)},
    }


_IGLUE = {
    "zero_shot": {
        "CCLM-base 3M": _iglue(74.64, 42.36, 65.91, 67.35, 65.37, 27.46, 28.66),
        "CCLM-base 4M": _iglue(73.32, 46.24, 67.17, 76.56, 73.46, 27.48, 28.75),
    },
    "few_shot": {
        "CCLM-base 3M": _iglue(75.15, 50.94, 70.53, 66.04, 68.15, None, None),
        "CCLM-base 4M": _iglue(74.19, 55.11, 72.57, 74.74, 75.85, None, None),
    },
}
_RETRIEVAL = {
    "zero_shot": {
        "CCLM-base 3M": _mean_recall((94.8, 90.3, 90.9, 89.4), (93.2, 91.0, 88.8)),
        "CCLM-base 4M": _mean_recall((95.7, 91.7, 92.9, 91.7), (94.3, 91.7, 91.5)),
    },
    "single_language": {
        "CCLM-base 3M": _mean_recall((94.8, 91.9, 90.6, 88.9), (93.2, 90.2, 93.3)),
        "CCLM-base 4M": _mean_recall((95.7, 93.0, 92.3, 91.5), (94.5, 92.6, 94.2)),
    },
    "all_language": {
        "CCLM-base 3M": _mean_recall((95.3, 92.4, 92.1, 91.2), (93.1, 92.2, 93.2)),
        "CCLM-base 4M": _mean_recall((96.0, 93.3, 93.7, 92.8), (94.1, 93.0, 94.3)),
    },
}


def paper_numbers(task: str, setting: str) -> dict[str, dict[str, dict[str, float]]]:
    """`{paper model: {"average" | language: {metric: percent}}}` for a task and setting; empty when none exist."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for table in (_IGLUE, _RETRIEVAL):
        for model, tasks in table.get(setting, {}).items():
            if task in tasks:
                results[model] = tasks[task]
    return results


__all__ = ["IGLUE_COLUMNS", "IGLUE_TRANSLATE_TEST", "PAPER_MODELS", "paper_numbers"]
