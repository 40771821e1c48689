"""Write the multilingual shapes data in the original CCLM jsonl formats, for the pre-training recipe.

- `images.jsonl`: `{"binary": <base64 PNG>, "caption": {"en": ...}}` (image-caption stream);
- `regions.jsonl`: `{"binary": ..., "caption": {"en": ...}, "elems": [{"bb": [x, y, w, h], "caption": {...}}]}`
  whose region is the shape's bounding box, described in every language;
- `parallel.jsonl`: `{"source_text": <English>, "target_text": <de/fr/es/zh>}`.

    python -m cclm_hf.demo.jsonl_data OUTPUT_DIR [--num-images 256] [--num-pairs 512]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import shapes


def _png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shape_box(pixels: np.ndarray) -> list[int]:
    """`[x, y, w, h]` of the pixels that differ clearly from the (light, mildly noisy) background."""
    background = np.median(pixels.reshape(-1, 3), axis=0)
    foreground = np.abs(pixels.astype(np.int16) - background).max(axis=-1) > 48
    rows, cols = np.nonzero(foreground)
    x0, y0 = int(cols.min()), int(rows.min())
    return [x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1]


def write_shapes_jsonl(output_dir: str | Path, num_images: int = 256, num_pairs: int = 512, seed: int = 0) -> Path:
    """Write `images.jsonl`, `regions.jsonl` and `parallel.jsonl` to `output_dir` and return it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = shapes.pretraining_pairs(num_images, seed=seed)
    rng = np.random.default_rng(seed)
    concepts = shapes.all_concepts()
    with (
        open(output_dir / "images.jsonl", "w", encoding="utf-8") as images,
        open(output_dir / "regions.jsonl", "w", encoding="utf-8") as regions,
    ):
        for pixels, text, concept_id in zip(data.images, data.captions, data.concept_ids.tolist(), strict=True):
            binary = _png_base64(pixels)
            images.write(json.dumps({"binary": binary, "caption": {"en": text}}, ensure_ascii=False) + "\n")
            region_captions = {lang: shapes.caption(concepts[concept_id], lang, rng) for lang in shapes.LANGUAGES}
            element = {"bb": _shape_box(pixels), "caption": region_captions}
            record = {"binary": binary, "caption": {"en": text}, "elems": [element]}
            regions.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(output_dir / "parallel.jsonl", "w", encoding="utf-8") as parallel:
        for record in shapes.parallel_text_records(shapes.parallel_sentences(num_pairs, seed=seed)):
            parallel.write(json.dumps(record, ensure_ascii=False) + "\n")
    return output_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--num-pairs", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_shapes_jsonl(args.output_dir, args.num_images, args.num_pairs, args.seed)


if __name__ == "__main__":
    main()
