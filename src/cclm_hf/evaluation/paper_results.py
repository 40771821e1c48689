"""Numbers reported for CCLM (and IGLUE's translate-test baselines), to print next to ours.

Transcribed from `docs/evaluation.md` (sections 1.1, 1.3, 1.4), which took them from the CCLM paper v1 tables
(`zengyan-97/CCLM@af3908f:cclm-results-1.png`, `cclm-results-2.png`; mean (std) over 3 seeds) and from
`e-bug/iglue/results/*.csv`. Values are percentages, as published. The paper gives IGLUE numbers only as averages over
the target languages (English excluded) and Multi30K / MSCOCO as mean recall per language.
"""

from __future__ import annotations

from dataclasses import dataclass


__all__ = [
    "IGLUE_COLUMNS",
    "IGLUE_CCLM_ROWS",
    "IGLUE_TRANSLATE_TEST_ROWS",
    "PaperNumber",
    "paper_numbers",
]


@dataclass(frozen=True)
class PaperNumber:
    model: str
    value: float
    std: float | None = None

    def __str__(self) -> str:
        return f"{self.value:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


# (task, metric of OUT/metrics.json "average", column title) of IGLUE's main table.
IGLUE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("xvnli", "accuracy", "XVNLI"),
    ("xgqa", "accuracy", "xGQA"),
    ("marvl", "accuracy", "MaRVL"),
    ("xflickrco", "img_r1", "xF&C IR"),
    ("xflickrco", "txt_r1", "xF&C TR"),
    ("wit", "img_r1", "WIT IR"),
    ("wit", "txt_r1", "WIT TR"),
)

# setting -> model -> the 7 columns as (mean, std); None where the paper has no number (WIT has no few-shot split).
IGLUE_CCLM_ROWS: dict[str, dict[str, tuple[tuple[float, float] | None, ...]]] = {
    "zero_shot": {
        "CCLM-base 3M": ((74.64, 0.59), (42.36, 0.68), (65.91, 0.40), (67.35, 0.31), (65.37, 0.10), (27.46, 0.14),
                         (28.66, 0.19)),
        "CCLM-base 4M": ((73.32, 0.24), (46.24, 0.21), (67.17, 0.42), (76.56, 0.14), (73.46, 0.09), (27.48, 0.18),
                         (28.75, 0.23)),
    },
    "few_shot": {
        "CCLM-base 3M": ((75.15, 0.03), (50.94, 0.02), (70.53, 0.18), (66.04, 0.05), (68.15, 0.04), None, None),
        "CCLM-base 4M": ((74.19, 0.07), (55.11, 0.00), (72.57, 0.48), (74.74, 0.01), (75.85, 0.03), None, None),
    },
}  # fmt: skip

# Translate-test with English-only VLMs (IGLUE paper): the bar CCLM's zero-shot transfer is compared with.
IGLUE_TRANSLATE_TEST_ROWS: dict[str, tuple[float, ...]] = {
    "UNITER": (73.65, 50.62, 61.92, 41.04, 37.49, 15.43, 16.01),
    "ViLBERT": (73.45, 50.33, 62.39, 36.97, 33.21, 15.40, 16.93),
    "VisualBERT": (74.12, 48.72, 62.35, 41.64, 36.44, 15.36, 15.75),
    "VL-BERT": (73.86, 49.78, 64.16, 38.18, 31.84, 15.11, 16.09),
    "LXMERT": (72.57, 48.08, 62.51, 34.02, 26.66, 14.28, 14.85),
}

# Multi30K / MSCOCO mean recall (`r_mean`) per language and fine-tuning protocol.
_RETRIEVAL_MEAN_RECALL: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    # protocol -> model -> (M30K en, de, fr, cs, COCO en, zh, ja)
    "en": {"CCLM-base 3M": (94.8, 90.3, 90.9, 89.4, 93.2, 91.0, 88.8),
           "CCLM-base 4M": (95.7, 91.7, 92.9, 91.7, 94.3, 91.7, 91.5)},
    "single": {"CCLM-base 3M": (94.8, 91.9, 90.6, 88.9, 93.2, 90.2, 93.3),
               "CCLM-base 4M": (95.7, 93.0, 92.3, 91.5, 94.5, 92.6, 94.2)},
    "all": {"CCLM-base 3M": (95.3, 92.4, 92.1, 91.2, 93.1, 92.2, 93.2),
            "CCLM-base 4M": (96.0, 93.3, 93.7, 92.8, 94.1, 93.0, 94.3)},
}  # fmt: skip
_RETRIEVAL_COLUMNS = (("multi30k", "en"), ("multi30k", "de"), ("multi30k", "fr"), ("multi30k", "cs"),
                      ("mscoco", "en"), ("mscoco", "zh"), ("mscoco", "ja"))  # fmt: skip

# English benchmarks (evaluation.md 1.4; the CCLM variant is not stated by the source).
_ENGLISH = {
    "vqa": {"en": {"accuracy": PaperNumber("CCLM (test-dev)", 77.17)}},
    "nlvr2": {"en": {"accuracy": PaperNumber("CCLM (test-P)", 83.22)}},
}


def paper_numbers(task: str, setting: str = "zero_shot", train_languages: str = "en") -> dict[str, dict[str, list]]:
    """`{"average" | language: {metric: [PaperNumber, ...]}}` for a run of `task` (empty where the paper has none).

    `train_languages` selects the Multi30K / MSCOCO protocol: `"en"` (English only, the zero-shot columns),
    `"all"`, or one language (single-language fine-tuning).
    """
    numbers: dict[str, dict[str, list[PaperNumber]]] = {}
    if setting in IGLUE_CCLM_ROWS:
        for index, (column_task, metric, _) in enumerate(IGLUE_COLUMNS):
            if column_task != task:
                continue
            for model, row in IGLUE_CCLM_ROWS[setting].items():
                if row[index] is not None:
                    numbers.setdefault("average", {}).setdefault(metric, []).append(PaperNumber(model, *row[index]))
    protocol = train_languages if train_languages in ("en", "all") else "single"
    for index, (column_task, language) in enumerate(_RETRIEVAL_COLUMNS):
        if column_task == task and (protocol != "single" or language == train_languages):
            for model, row in _RETRIEVAL_MEAN_RECALL[protocol].items():
                numbers.setdefault(language, {}).setdefault("r_mean", []).append(PaperNumber(model, row[index]))
    for language, metrics in _ENGLISH.get(task, {}).items():
        for metric, number in metrics.items():
            numbers.setdefault(language, {}).setdefault(metric, []).append(number)
    return numbers
