"""Quick start: build a tiny CCLM, save it with its processor, reload it through the Auto classes, rank images.

The weights are random, so the ranking itself is meaningless: the script shows the API end to end in a few seconds,
offline. For a model that has learned something, run the built-in demo or convert an original checkpoint
(`cclm-hf convert --help`).

    python examples/quickstart.py --output-dir outputs/quickstart
"""

from __future__ import annotations

import argparse

import torch
from PIL import Image, ImageDraw
from transformers import AutoModel, AutoProcessor

from cclm_hf import (
    CCLMConfig,
    CCLMForImageTextRetrieval,
    CCLMProcessor,
    train_xlm_roberta_tokenizer,
)
from cclm_hf.retrieval import encode_images, encode_texts, itm_rerank


QUERIES = {
    "en": ["a red circle", "a blue square"],
    "de": ["ein roter Kreis", "ein blaues Quadrat"],
    "fr": ["un cercle rouge", "un carré bleu"],
    "zh": ["一个红色的圆形", "一个蓝色的正方形"],
}


def draw(shape: str, colour: str) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    box = (16, 16, 48, 48)
    (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, fill=colour)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/quickstart")
    args = parser.parse_args()
    torch.manual_seed(0)

    tokenizer = train_xlm_roberta_tokenizer([q for qs in QUERIES.values() for q in qs] * 4, vocab_size=120)
    config = CCLMConfig.from_preset("cclm-tiny", text_config={"vocab_size": len(tokenizer)})
    processor = CCLMProcessor.from_tokenizer(tokenizer, config.image_size)
    CCLMForImageTextRetrieval(config).save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)

    # what a user of the saved folder does
    processor = AutoProcessor.from_pretrained(args.output_dir)
    base_model = AutoModel.from_pretrained(args.output_dir).eval()
    retrieval_model = CCLMForImageTextRetrieval.from_pretrained(args.output_dir).eval()
    print(f"saved and reloaded {type(base_model).__name__} / {type(retrieval_model).__name__} from {args.output_dir}")

    gallery = {"red circle": draw("circle", "red"), "blue square": draw("square", "blue")}
    names = list(gallery)
    images = encode_images(base_model, processor(images=list(gallery.values()), return_tensors="pt")["pixel_values"])
    for language, queries in QUERIES.items():
        inputs = processor(text=queries, padding=True, return_tensors="pt")
        texts = encode_texts(base_model, inputs["input_ids"], inputs["attention_mask"])
        contrastive = texts.embeds @ images.embeds.t()
        _, reranked = itm_rerank(retrieval_model, images, texts, k=2)
        for query, itc_row, itm_row in zip(queries, contrastive, reranked, strict=True):
            print(
                f"[{language}] {query!r:24} ITC top-1: {names[itc_row.argmax()]:12} "
                f"ITM top-1: {names[itm_row.argmax()]:12} (random weights)"
            )


if __name__ == "__main__":
    main()
