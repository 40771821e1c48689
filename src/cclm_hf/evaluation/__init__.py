"""Benchmark metrics (accuracy, VQA accuracy, retrieval recalls, IGLUE averages), metrics files, the IGLUE table."""

from .iglue import IGLUE_TASKS, iglue_table, load_runs, merge_runs
from .metrics import ENGLISH, accuracy, language_average, mean_and_std, retrieval_metrics, retrieval_ranks
from .reporting import build_metrics, combine_seeds, render_metrics_markdown, write_metrics
from .vqa import normalize_answer_digits_articles, normalize_answer_punctuation, vqa_accuracy


__all__ = [
    "ENGLISH",
    "IGLUE_TASKS",
    "accuracy",
    "build_metrics",
    "iglue_table",
    "load_runs",
    "merge_runs",
    "combine_seeds",
    "language_average",
    "mean_and_std",
    "normalize_answer_digits_articles",
    "normalize_answer_punctuation",
    "render_metrics_markdown",
    "retrieval_metrics",
    "retrieval_ranks",
    "vqa_accuracy",
    "write_metrics",
]
