"""Speed of pre-training optimizer steps of the demo model on the recipe's data path, per step type, with an
optional torch.profiler table.

    python benchmarks/pretraining_step.py [--steps 20] [--repeats 3] [--batch-size 64] [--window-sizes 4 8] [--profile]

Batches come from `cclm_hf.demo.run.demo_schedule`: in-memory readers -> the pre-training streams -> collators ->
`PretrainingSchedule`, exactly what `cclm-hf demo` and `examples/pretrain.py` run. For each step type (image-caption,
parallel-text) it prints the median over `--repeats` of: training steps/s (fetch + forward + backward + clipping +
AdamW), the share of that time spent fetching the batch, and the ratio to a forward-only pass timed in the same
process (the baseline), so numbers are comparable across machines. With several `--window-sizes` the models are
timed in turn within each repeat and each row also gives its steps/s as a multiple of the first window's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from cclm_hf import CCLMForPreTraining, train_xlm_roberta_tokenizer
from cclm_hf.demo import shapes
from cclm_hf.demo.run import DemoConfig, demo_model_config, demo_schedule
from cclm_hf.training import create_pretraining_optimizer


def time_schedule(model, optimizer, schedule, steps: int, train: bool) -> dict[str, tuple[float, float]]:
    """`{step_type: (steps per second, share of the time spent fetching batches)}` over `steps` steps per type."""
    fetch, total, counts = defaultdict(float), defaultdict(float), defaultdict(int)
    iterator = iter(schedule)
    for _ in range(4):  # warm-up: one of each type at least
        batch = dict(next(iterator))
        model(**batch, batch_kind=batch.pop("step_type")).loss.backward()
        optimizer.zero_grad(set_to_none=True)
    while min(counts.values(), default=0) < steps or len(counts) < 2:
        start = time.perf_counter()
        batch = dict(next(iterator))
        fetched = time.perf_counter()
        step_type = batch.pop("step_type")
        if train:
            model(**batch, batch_kind=step_type).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(**batch, batch_kind=step_type)
        end = time.perf_counter()
        fetch[step_type] += fetched - start
        total[step_type] += end - start
        counts[step_type] += 1
    return {name: (counts[name] / total[name], fetch[name] / total[name]) for name in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per step type and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--window-sizes",
        type=int,
        nargs="+",
        default=[DemoConfig.window_size],
        help="Swin windows to compare, timed in turn within each repeat (default: the demo's)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = DemoConfig(batch_size=args.batch_size)
    tokenizer = train_xlm_roberta_tokenizer(shapes.tokenizer_corpus(0), whole_words=True)
    pairs = shapes.pretraining_pairs(2000, seed=0)
    parallel = shapes.parallel_sentences(2000, seed=0)
    runs = {}
    for window_size in args.window_sizes:
        model = CCLMForPreTraining(demo_model_config(len(tokenizer), window_size)).train()
        optimizer = create_pretraining_optimizer(model, learning_rate=5e-4, new_parameter_patterns=("*",))
        runs[window_size] = (model, optimizer, demo_schedule(config, tokenizer, model.config, pairs, parallel))

    results = defaultdict(list)
    for _ in range(args.repeats):
        for window_size, (model, optimizer, schedule) in runs.items():
            forward = time_schedule(model, optimizer, schedule, args.steps, train=False)
            train = time_schedule(model, optimizer, schedule, args.steps, train=True)
            for name in train:
                results[window_size, name].append((train[name][0], train[name][1], train[name][0] / forward[name][0]))
    medians = {
        key: [statistics.median(values) for values in zip(*runs_, strict=True)] for key, runs_ in results.items()
    }
    first = args.window_sizes[0]
    for (window_size, name), (rate, fetch_share, ratio) in sorted(medians.items()):
        against_first = f"   {rate / medians[first, name][0]:.2f}x window {first}" if window_size != first else ""
        print(
            f"window {window_size} {name:9s} train {rate:6.2f} steps/s (median of {args.repeats}; "
            f"{100 * fetch_share:4.1f}% fetching the batch)   ratio to forward-only {ratio:.3f}{against_first}"
        )
    if args.profile:
        model, _, schedule = runs[first]
        iterator = iter(schedule)
        with torch.profiler.profile() as profiler:
            for _ in range(10):
                batch = dict(next(iterator))
                model(**batch, batch_kind=batch.pop("step_type")).loss.backward()
        print(profiler.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
