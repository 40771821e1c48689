"""How fast can the demo's vision tower learn each attribute of a shape when it is told the answer?

Trains the `cclm-tiny` vision tower (Swin 64 px, the preset's initialisation) from scratch with one linear
classifier per attribute (shape, colour, size, position) on its pooled token, the sum of the four cross-entropy
losses, AdamW and gradient clipping as in the demo, on the demo's generated images; every `--probe-every` steps it
prints the accuracy of each classifier on held-out images (drawn from another seed). This is an upper bound for
what the contrastive and matching losses can get out of the same tower in the same number of image steps: they
only see the attributes through the captions.

    python benchmarks/vision_attribute_probe.py --rotation-degrees 360 --output probe_360.json
    python benchmarks/vision_attribute_probe.py --rotation-degrees 40 --output probe_40.json
    python benchmarks/vision_attribute_probe.py --table probe_*.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cclm_hf.configuration_cclm import CCLMConfig
from cclm_hf.data.transforms import eval_transform
from cclm_hf.demo import shapes
from cclm_hf.modeling_cclm import CCLMModel


ATTRIBUTES = {
    "shape": shapes.SHAPES,
    "colour": shapes.COLOURS,
    "size": shapes.SIZES,
    "position": shapes.POSITIONS,
}


def attribute_labels(concept_ids: np.ndarray) -> torch.Tensor:
    """`[N, 4]` class index of each attribute of each concept."""
    concepts = shapes.all_concepts()
    return torch.tensor(
        [[values.index(getattr(concepts[i], name)) for name, values in ATTRIBUTES.items()] for i in concept_ids]
    )


def pixel_values(images: np.ndarray, image_size: int) -> torch.Tensor:
    transform = eval_transform(image_size)
    return torch.stack([transform(Image.fromarray(pixels)) for pixels in images])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", nargs="+", help="print the table of finished runs (JSON files) and exit")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="the demo's 1e-3 x its multiplier 2")
    parser.add_argument("--rotation-degrees", type=float, default=shapes.ROTATION_DEGREES)
    parser.add_argument("--num-train-images", type=int, default=6000)
    parser.add_argument("--num-test-images", type=int, default=960)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, help="JSON file for the accuracies")
    return parser.parse_args()


def print_table(paths: list[str]) -> None:
    runs = [json.loads(Path(path).read_text()) for path in paths]
    steps = sorted({int(step) for run in runs for step in run["accuracy"]})
    print("| run | rotation | step | " + " | ".join(ATTRIBUTES) + " |")
    print("|---|---|---|" + "---|" * len(ATTRIBUTES))
    for path, run in zip(paths, runs, strict=True):
        for step in steps:
            if str(step) in run["accuracy"] and (step % 200 == 0 or step == steps[-1]):
                accuracy = run["accuracy"][str(step)]
                cells = " | ".join(f"{accuracy[name]:.2f}" for name in ATTRIBUTES)
                print(f"| {Path(path).stem} | {run['args']['rotation_degrees']:g} | {step} | {cells} |")


def main() -> None:
    args = parse_args()
    if args.table:
        print_table(args.table)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = CCLMConfig.from_preset("cclm-tiny")
    model = CCLMModel(config)
    train = shapes.pretraining_pairs(args.num_train_images, seed=args.seed, rotation_degrees=args.rotation_degrees)
    test = shapes.pretraining_pairs(args.num_test_images, seed=args.seed + 1, rotation_degrees=args.rotation_degrees)
    train_x, test_x = pixel_values(train.images, config.image_size), pixel_values(test.images, config.image_size)
    train_y, test_y = attribute_labels(train.concept_ids), attribute_labels(test.concept_ids)
    width = config.vision_config.hidden_size
    classifiers = nn.ModuleList([nn.Linear(width, len(values)) for values in ATTRIBUTES.values()])
    parameters = [*model.vision_model.parameters(), *classifiers.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=0.01, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(args.seed)

    def pooled(pixels: torch.Tensor) -> torch.Tensor:
        return model.get_image_features(pixels).last_hidden_state[:, 0]

    accuracy: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.probe_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                features = pooled(test_x)
                accuracy[str(step)] = {
                    name: (head(features).argmax(-1) == test_y[:, k]).float().mean().item()
                    for k, (name, head) in enumerate(zip(ATTRIBUTES, classifiers, strict=True))
                }
            model.train()
            cells = " ".join(f"{name} {value:.2f}" for name, value in accuracy[str(step)].items())
            print(f"step {step:5d} ({time.perf_counter() - start:5.0f} s): {cells}", flush=True)
        if step == args.steps:
            break
        batch = torch.randint(0, len(train_x), (args.batch_size,), generator=generator)
        features = pooled(train_x[batch])
        loss = sum(
            nn.functional.cross_entropy(head(features), train_y[batch, k]) for k, head in enumerate(classifiers)
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
    if args.output:
        args.output.write_text(json.dumps({"args": {**vars(args), "output": str(args.output)}, "accuracy": accuracy}))


if __name__ == "__main__":
    main()
