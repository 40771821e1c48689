"""Fine-tuning and evaluation on the CCLM benchmarks: task specs, command line, data plans, trainers, runner.

Each of `examples/run_retrieval.py`, `run_xvnli.py`, `run_nlvr.py` and `run_vqa.py` is [`run_benchmark`] with a
[`BenchmarkFamily`].
"""

from .arguments import (
    AnswerRankingArguments,
    BenchmarkArguments,
    FinetuningTrainingArguments,
    ModelArguments,
    RetrievalArguments,
    parse_benchmark_arguments,
)
from .data import RunData, RunPlan, image_roots, load_run_data, plan_runs
from .families import (
    EntailmentFamily,
    NLVRFamily,
    RetrievalFamily,
    VQAFamily,
    read_nlvr_records,
    read_vqa_answer_list,
    read_vqa_records,
)
from .modeling import load_processor, load_task_model, text_capacity
from .retrieval import GalleryEvaluator
from .runner import BAD_INPUT_ERRORS, BenchmarkFamily, RunContext, run_benchmark
from .tasks import SETTINGS, TASKS, TaskSpec, get_task
from .trainer import AnswerRankingTrainer, CCLMFinetuningTrainer, RetrievalTrainer


__all__ = [
    "BAD_INPUT_ERRORS",
    "AnswerRankingArguments",
    "AnswerRankingTrainer",
    "SETTINGS",
    "TASKS",
    "BenchmarkArguments",
    "BenchmarkFamily",
    "CCLMFinetuningTrainer",
    "EntailmentFamily",
    "NLVRFamily",
    "FinetuningTrainingArguments",
    "GalleryEvaluator",
    "ModelArguments",
    "RetrievalArguments",
    "RetrievalFamily",
    "RetrievalTrainer",
    "RunContext",
    "RunData",
    "RunPlan",
    "TaskSpec",
    "VQAFamily",
    "get_task",
    "image_roots",
    "load_processor",
    "load_run_data",
    "load_task_model",
    "parse_benchmark_arguments",
    "plan_runs",
    "read_nlvr_records",
    "read_vqa_answer_list",
    "read_vqa_records",
    "run_benchmark",
    "text_capacity",
]
