"""Run by `torchrun --nproc_per_node 2` in tests/test_benchmark_scripts.py: both scripts, evaluation only.

python benchmark_distributed_worker.py ROOT MODEL_RETRIEVAL MODEL_XVNLI OUT
"""

import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

import run_retrieval  # noqa: E402
import run_xvnli  # noqa: E402


root, retrieval_model, xvnli_model, output = sys.argv[1:5]
flags = ["--data_root", root, "--do_predict", "--per_device_eval_batch_size", "2", "--report_to", "none"]
flags += ["--disable_tqdm", "true"]
run_retrieval.main(
    ["--task", "xflickrco", "--languages", "de,ja,zh", "--model_name_or_path", retrieval_model,
     "--output_dir", f"{output}/xflickrco", *flags]
)  # fmt: skip
run_xvnli.main(
    ["--task", "xvnli", "--languages", "ar,fr", "--model_name_or_path", xvnli_model,
     "--output_dir", f"{output}/xvnli", *flags]
)  # fmt: skip
