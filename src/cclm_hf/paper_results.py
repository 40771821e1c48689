"""CCLM's reported numbers, to print beside our own (model cards, metrics tables).

Transcribed from the CCLM paper v1 tables (Table 1: IGLUE; Table 2: Multi30K / multilingual MSCOCO) as collected in
the project's `evaluation.md` (sections 1.1 and 1.3), in percent as printed. Only CCLM-base 3M and 4M numbers exist
there; the paper gives IGLUE numbers as means over the target languages (English excluded), and Multi30K / MSCOCO
numbers per language.

Keys follow the `metrics.json` of the benchmark recipes: `(task, setting)`, then the paper's model, then
`"average"` or a language, then the metric: `accuracy` (XVNLI, xGQA, MaRVL), `img_r1` / `txt_r1` (text->image "IR"
and image->text "TR" recall@1, the names of `cclm_hf.retrieval.retrieval_recalls`), `r_mean` (mean of the six
recalls). Multi30K / MSCOCO settings: `zero_shot` (fine-tuned on English only), `single_language`, `all_language`.
"""

from __future__ import annotations


PAPER_MODELS = ("CCLM-base 3M", "CCLM-base 4M")


def _iglue(*values: float | None) -> dict[str, dict[str, dict[str, float]]]:
    """`values` in the IGLUE column order XVNLI, xGQA, MaRVL, xF&C IR, xF&C TR, WIT IR, WIT TR -> per-task entries."""
    columns = (
        ("xvnli", "accuracy"),
        ("xgqa", "accuracy"),
        ("marvl", "accuracy"),
        ("xflickrco", "img_r1"),
        ("xflickrco", "txt_r1"),
        ("wit", "img_r1"),
        ("wit", "txt_r1"),
    )
    tasks: dict[str, dict[str, dict[str, float]]] = {}
    for (task, metric), value in zip(columns, values, strict=True):
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


__all__ = ["PAPER_MODELS", "paper_numbers"]
