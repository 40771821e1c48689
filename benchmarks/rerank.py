"""Speed and memory of ITM re-ranking (`cclm_hf.retrieval.itm_rerank`) against the per-pair re-ranker it replaced.

    python benchmarks/rerank.py [--sizes tiny base] [--tiny-n 320] [--base-n 8] [--k 8] [--threads 1]

A synthetic gallery of N images with 5 captions each is re-ranked as the CCLM evaluation does: the top-k captions
of every image and the top-k images of every caption by contrastive similarity are scored by the matching head.
Models have random weights (`tiny`: the demo model; `base`: Swin-B 384 + the 1024-wide 12-layer text stack); the
re-ranker's inputs are synthetic too, with the shapes the encoders produce (1 + 144 image tokens of width 1024 at
base size; captions padded to 40 tokens, as CCLM's `max_tokens`, of 8-24 real tokens), and embeddings where each
caption is near its image, so that the candidate sets look like those of a trained model.

Each (size, N, re-ranker) runs in a fresh process; its peak RSS is measured from the start of the re-ranking (the
inputs, about 4 * N * (1 + P) * D + 4 * 5N * 40 * H bytes, and the model are resident already: `rss_before_mb`).
One JSON line per (size, N) with, for both re-rankers: wall-clock and CPU seconds, queries/s (queries = images +
captions, by wall clock), peak RSS and the pairs fused; the speed-up (baseline / new, by CPU time, and by wall clock); the largest score difference.

One torch thread by default: on a machine shared with other processes, OpenMP threads that wait for each other make
wall-clock times of small operations vary by 10x, while the CPU time of a single-threaded process stays within a few
percent, so the speed-up is computed from CPU time (`--threads` changes this; CPU time then includes spinning).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cclm_hf import CCLMConfig, CCLMForImageTextRetrieval
from cclm_hf.demo.run import demo_model_config
from cclm_hf.retrieval import EncodedImages, EncodedTexts, itm_rerank


CAPTIONS_PER_IMAGE = 5
TEXT_LENGTH = 40  # CCLM's retrieval configs pad captions to max_tokens = 40
CAPTION_TOKENS = (8, 24)
CAPTION_NOISE = 0.8  # norm of the noise added to an image's embedding to make each of its captions' embeddings


# ---------------------------------------------------------------------------------------------------------------------
# the baseline: `itm_rerank` as it was before this benchmark's re-ranker replaced it (one fusion per candidate)
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def baseline_itm_rerank(model, images, texts, k, batch_size=128):
    similarity = images.embeds @ texts.embeds.t()
    image_to_text = _baseline_rerank_rows(model, similarity, images, texts, k, batch_size, queries_are_images=True)
    text_to_image = _baseline_rerank_rows(
        model, similarity.t(), images, texts, k, batch_size, queries_are_images=False
    )
    return image_to_text, text_to_image


def _baseline_rerank_rows(model, similarity, images, texts, k, batch_size, queries_are_images):
    k = min(k, similarity.shape[1])
    candidates = similarity.topk(k, dim=1).indices  # [Q, k]
    queries = torch.arange(similarity.shape[0], device=similarity.device).repeat_interleave(k)
    candidates = candidates.flatten()
    image_index, text_index = (queries, candidates) if queries_are_images else (candidates, queries)
    logits = []
    for start in tqdm(range(0, len(queries), batch_size), desc="ITM re-ranking", leave=False):
        images_batch = image_index[start : start + batch_size]
        texts_batch = text_index[start : start + batch_size]
        logits.append(
            model.get_itm_logits(
                images.tokens[images_batch], texts.states[texts_batch], texts.attention_mask[texts_batch]
            )[:, 1]
        )
    scores = torch.full_like(similarity, -100.0)
    scores[queries, candidates] = torch.cat(logits).to(scores.dtype)
    return scores


# ---------------------------------------------------------------------------------------------------------------------
# synthetic gallery
# ---------------------------------------------------------------------------------------------------------------------


def synthetic_gallery(config: CCLMConfig, num_images: int, seed: int = 0) -> tuple[EncodedImages, EncodedTexts]:
    generator = torch.Generator().manual_seed(seed)
    num_texts = CAPTIONS_PER_IMAGE * num_images
    tokens = torch.randn(num_images, config.num_image_tokens, config.vision_config.hidden_size, generator=generator)
    image_embeds = F.normalize(torch.randn(num_images, config.projection_dim, generator=generator), dim=-1)
    noise = F.normalize(torch.randn(num_texts, config.projection_dim, generator=generator), dim=-1)
    owner = torch.arange(num_images).repeat_interleave(CAPTIONS_PER_IMAGE)
    text_embeds = F.normalize(image_embeds[owner] + CAPTION_NOISE * noise, dim=-1)
    states = torch.randn(num_texts, TEXT_LENGTH, config.text_config.hidden_size, generator=generator)
    lengths = torch.randint(CAPTION_TOKENS[0], CAPTION_TOKENS[1] + 1, (num_texts, 1), generator=generator)
    attention_mask = (torch.arange(TEXT_LENGTH)[None, :] < lengths).long()
    return EncodedImages(tokens, image_embeds), EncodedTexts(states, attention_mask, text_embeds)


def candidate_pairs(images: EncodedImages, texts: EncodedTexts, k: int) -> tuple[int, int]:
    """Pairs the baseline fuses (each direction's top-k) and the distinct pairs among them."""
    similarity = images.embeds @ texts.embeds.t()
    num_images, num_texts = similarity.shape
    texts_of_image = similarity.topk(min(k, num_texts), dim=1).indices
    images_of_text = similarity.t().topk(min(k, num_images), dim=1).indices
    ids = torch.cat(
        [
            (torch.arange(num_images)[:, None] * num_texts + texts_of_image).flatten(),
            (images_of_text * num_texts + torch.arange(num_texts)[:, None]).flatten(),
        ]
    )
    return len(ids), len(ids.unique())


# ---------------------------------------------------------------------------------------------------------------------
# one measurement per process
# ---------------------------------------------------------------------------------------------------------------------


def _resident_mb(field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (peak since the last `_reset_peak_resident`) of this process, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_resident() -> None:
    # "5" resets the peak RSS (VmHWM) to the current RSS, so that loading the model does not count as the peak
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def measure(model_dir: str, num_images: int, k: int, chunk_size: int, threads: int, baseline: bool, out: str) -> dict:
    torch.set_num_threads(threads)
    model = CCLMForImageTextRetrieval.from_pretrained(model_dir).eval()
    images, texts = synthetic_gallery(model.config, num_images)
    rerank = baseline_itm_rerank if baseline else itm_rerank
    rerank(model, *synthetic_gallery(model.config, 2, seed=1), k=2, batch_size=chunk_size)  # warm-up
    resident_before = _resident_mb("VmRSS")
    _reset_peak_resident()
    start, start_cpu = time.perf_counter(), time.process_time()
    image_to_text, text_to_image = rerank(model, images, texts, k=k, batch_size=chunk_size)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    torch.save({"image_to_text": image_to_text, "text_to_image": text_to_image}, out)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before_mb": resident_before,
        "peak_rss_mb": _resident_mb("VmHWM"),
    }


def run_in_fresh_process(**kwargs) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, kwds=kwargs)


def benchmark_size(size: str, model: CCLMForImageTextRetrieval, sizes: list[int], args, workdir: Path) -> None:
    model_dir = workdir / size
    model.save_pretrained(model_dir)
    for num_images in sizes:
        images, texts = synthetic_gallery(model.config, num_images)
        baseline_pairs, fused_pairs = candidate_pairs(images, texts, args.k)
        del images, texts
        runs = {}
        for name, baseline in (("baseline", True), ("new", False)):
            out = str(workdir / f"{size}-{num_images}-{name}.pt")
            runs[name] = run_in_fresh_process(
                model_dir=str(model_dir),
                num_images=num_images,
                k=args.k,
                chunk_size=args.chunk_size,
                threads=args.threads,
                baseline=baseline,
                out=out,
            )
            runs[name]["scores"] = torch.load(out)
        difference = max(
            (runs["new"]["scores"][name] - runs["baseline"]["scores"][name]).abs().max().item()
            for name in ("image_to_text", "text_to_image")
        )
        queries = num_images * (1 + CAPTIONS_PER_IMAGE)
        record = {
            "size": size,
            "N": num_images,
            "captions": CAPTIONS_PER_IMAGE * num_images,
            "k": args.k,
            "chunk_size": args.chunk_size,
            "threads": args.threads,
            "seconds": round(runs["new"]["seconds"], 3),
            "cpu_seconds": round(runs["new"]["cpu_seconds"], 3),
            "queries_per_s": round(queries / runs["new"]["seconds"], 1),
            "peak_rss_mb": round(runs["new"]["peak_rss_mb"]),
            "rss_before_mb": round(runs["new"]["rss_before_mb"]),
            "fused_pairs": fused_pairs,
            "baseline_seconds": round(runs["baseline"]["seconds"], 3),
            "baseline_cpu_seconds": round(runs["baseline"]["cpu_seconds"], 3),
            "baseline_queries_per_s": round(queries / runs["baseline"]["seconds"], 1),
            "baseline_peak_rss_mb": round(runs["baseline"]["peak_rss_mb"]),
            "baseline_fused_pairs": baseline_pairs,
            "speedup": round(runs["baseline"]["cpu_seconds"] / runs["new"]["cpu_seconds"], 2),
            "wall_speedup": round(runs["baseline"]["seconds"] / runs["new"]["seconds"], 2),
            "max_abs_diff": difference,
        }
        print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["tiny", "base"], default=["tiny", "base"])
    parser.add_argument("--tiny-n", type=int, default=320, help="smallest gallery at tiny size (then 4N, 16N)")
    parser.add_argument("--base-n", type=int, default=8, help="smallest gallery at base size (then 4N, 16N)")
    parser.add_argument("--k", type=int, default=8, help="candidates per query")
    parser.add_argument("--chunk-size", type=int, default=128, help="pairs fused at once (both re-rankers)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see above)")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            if size == "tiny":
                config, smallest = demo_model_config(vocab_size=1000), args.tiny_n
            else:
                config, smallest = CCLMConfig.from_preset("cclm-base-384"), args.base_n
            model = CCLMForImageTextRetrieval(config).eval()
            benchmark_size(size, model, [smallest, 4 * smallest, 16 * smallest], args, Path(workdir))
            del model


if __name__ == "__main__":
    main()
