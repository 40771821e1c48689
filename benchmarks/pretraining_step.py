"""Speed of one pre-training optimizer step of the demo model, per step type (steps/s), with a torch.profiler table.

    python benchmarks/pretraining_step.py [--steps 20] [--profile]

Prints steps/s for the image-caption and the parallel-text step and their ratio to a forward-only pass in the same
process (the baseline), so numbers are comparable across machines.
"""

from __future__ import annotations

import argparse
import time

import torch

from cclm_hf import CCLMForPreTraining, train_xlm_roberta_tokenizer
from cclm_hf.data.masking import TextMasker
from cclm_hf.demo import shapes
from cclm_hf.demo.run import ImageCaptionBatches, ParallelTextBatches, demo_model_config
from cclm_hf.training import create_pretraining_optimizer


def timed_steps(model, optimizer, batches, steps: int, backward: bool = True) -> float:
    iterator = iter(batches)
    batch = next(iterator)
    for _ in range(3):  # warm-up
        loss = model(**batch).loss
        if backward:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        if backward:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(**batch)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tokenizer = train_xlm_roberta_tokenizer(shapes.tokenizer_corpus(0), whole_words=True)
    model = CCLMForPreTraining(demo_model_config(len(tokenizer))).train()
    optimizer = create_pretraining_optimizer(model, learning_rate=5e-4)
    pairs = shapes.pretraining_pairs(2000, seed=0)
    parallel = shapes.parallel_sentences(2000, seed=0)
    image = ImageCaptionBatches(
        pairs.images, pairs.captions, tokenizer, TextMasker.from_tokenizer(tokenizer, max_masks=6), args.batch_size, 0
    )
    text = ParallelTextBatches(
        parallel, tokenizer, TextMasker.from_tokenizer(tokenizer, max_masks=8), args.batch_size, 0
    )

    for name, batches in (("image-caption", image), ("parallel-text", text)):
        forward = timed_steps(model, optimizer, batches, args.steps, backward=False)
        train = timed_steps(model, optimizer, batches, args.steps)
        print(f"{name:14s} train {train:6.2f} steps/s   forward-only {forward:6.2f}/s   ratio {train / forward:.3f}")
    if args.profile:
        iterator = iter(image)
        with torch.profiler.profile() as profiler:
            for _ in range(5):
                model(**next(iterator)).loss.backward()
        print(profiler.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
