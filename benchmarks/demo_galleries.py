"""Contrastive ranking vs ITM re-ranking of a trained demo model, averaged over several newly drawn galleries.

`cclm-hf demo` scores one gallery of 192 images with one query per concept and language, so one query more or less
moves its R@1 by 0.005 and a language's difference between the two rankings by as much again: differences of a
few hundredths from one gallery are within that noise. This script scores the saved model on `--galleries` galleries
(the demo's own, seed 0, then seeds 101, 102, ...: other images and other caption paraphrases of the same 192
concepts) with the demo's evaluation (`cclm_hf.demo.run.evaluate_gallery`) and prints, per language, the mean
text->image R@1 of both rankings and their difference.

    python benchmarks/demo_galleries.py outputs/demo/model [--galleries 5] [--rotation-degrees 40]
"""

from __future__ import annotations

import argparse
import os


os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one progress bar per gallery and language

import torch  # noqa: E402

from cclm_hf import CCLMForImageTextRetrieval, CCLMProcessor  # noqa: E402
from cclm_hf.demo import shapes  # noqa: E402
from cclm_hf.demo.run import DemoConfig, evaluate_gallery  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="the `model/` folder a demo run wrote")
    parser.add_argument("--galleries", type=int, default=5)
    parser.add_argument("--rotation-degrees", type=float, default=shapes.ROTATION_DEGREES)
    parser.add_argument("--itm-rerank-k", type=int, default=DemoConfig.itm_rerank_k)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def gallery_seeds(count: int) -> list[int]:
    """The demo's own gallery (seed 0) first, then seeds 101, 102, ... (never a training seed of `cclm-hf demo`)."""
    return [0] + [100 + i for i in range(1, count)]


def mean_recalls(
    model_dir: str, seeds: list[int], rotation_degrees: float, itm_rerank_k: int
) -> dict[str, tuple[float, float]]:
    """`{language: (contrastive t2i R@1, re-ranked t2i R@1)}`, each the mean over the galleries of `seeds`."""
    model = CCLMForImageTextRetrieval.from_pretrained(model_dir).eval()
    processor = CCLMProcessor.from_pretrained(model_dir)
    sums: dict[str, list[float]] = {}
    for seed in seeds:
        gallery = shapes.test_gallery(seed, model.config.image_size, rotation_degrees=rotation_degrees)
        for language, values in evaluate_gallery(model, processor, gallery, itm_rerank_k).items():
            totals = sums.setdefault(language, [0.0, 0.0])
            totals[0] += values["t2i_r1"]
            totals[1] += values["t2i_r1_itm"]
    return {
        language: (contrastive / len(seeds), reranked / len(seeds))
        for language, (contrastive, reranked) in sums.items()
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    seeds = gallery_seeds(args.galleries)
    recalls = mean_recalls(args.model_dir, seeds, args.rotation_degrees, args.itm_rerank_k)
    print(f"{args.model_dir}: text->image R@1 over {len(seeds)} galleries (seeds {seeds}), top {args.itm_rerank_k}")
    print("| language | contrastive | ITM re-ranking | difference |")
    print("|---|---|---|---|")
    for language, (contrastive, reranked) in recalls.items():
        print(f"| {language} | {contrastive:.3f} | {reranked:.3f} | {reranked - contrastive:+.3f} |")


if __name__ == "__main__":
    main()
