"""Builds a tiny ROOT with every benchmark in its exact distributed format (a few records each, generated images).

The layout is the original README's (`iglue/datasets/...`, `images/...`, `data/finetune/...`,
`data/wit/annotations-bs64/...`), including IGLUE's zipped training files (`XVNLI/annotations/en/train.jsonl.zip`,
`gqa/annotations/train.json.zip`), the few-shot splits and the machine-translated (`_gmt`) test files. Field names,
types and quirks follow the real files: `Flikr30kID` (sic) and `-` gold labels in XVNLI, integer COCO ids and string
Flickr ids and empty sentences in xFlickr&CO, boolean MaRVL labels and a non-ASCII concept folder, NLVR2's string
labels and training `directory`, GQA's list and xGQA's dict json, WIT's base64 `image_content`.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from conftest import MULTILINGUAL_CAPTIONS
from PIL import Image


FLICKR_IDS = [str(1000001 + index) for index in range(8)]
COCO_VAL_IDS = [391895, 522418, 184613]
COCO_TRAIN_IDS = [9, 25, 30]
GQA_IMAGES = ["n1000", "n1001", "n1002", "n1003"]
XFLICKRCO_LANGUAGES = ("de", "en", "es", "id", "ja", "ru", "tr", "zh")
WIT_LANGUAGES = ("ar", "bg", "da", "el", "en", "et", "id", "ja", "ko", "tr", "vi")
XVNLI_LANGUAGES = ("ar", "en", "es", "fr", "ru")
XGQA_LANGUAGES = ("bn", "de", "en", "id", "ko", "pt", "ru", "zh")
MARVL_LANGUAGES = ("id", "sw", "ta", "tr", "zh")
MARVL_CONCEPTS = {"id": "39-Panci", "sw": "12-Sufuria", "ta": "7-பானை", "tr": "3-Tencere", "zh": "24-花生"}

# Captions in the tiny test tokenizer's languages (tests/conftest.py), reused for the others.
CAPTIONS = MULTILINGUAL_CAPTIONS["en"][:8]
GERMAN = MULTILINGUAL_CAPTIONS["de"][:8]


def captions_in(language: str) -> list[str]:
    return GERMAN if language == "de" else CAPTIONS


def image_bytes(seed: int, size: tuple[int, int] = (40, 32), fmt: str = "JPEG") -> bytes:
    """A small deterministic picture (gradients and a block, different for every seed)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, rng.integers(0, 255))], axis=-1)
    x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
    pixels[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 255, size=3)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _write_image(path: Path, seed: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, fmt=fmt))


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return path


def _zip_in_place(path: Path) -> Path:
    """Replace `path` by `path.zip` holding it, as IGLUE distributes its large files."""
    archive = path.with_name(path.name + ".zip")
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(path, arcname=path.name)
    path.unlink()
    return archive


def _images(root: Path) -> None:
    images = root / "images"
    for index, image_id in enumerate(FLICKR_IDS):
        _write_image(images / "flickr30k-images" / f"{image_id}.jpg", index)
    for index, image_id in enumerate(COCO_VAL_IDS):
        _write_image(images / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", 100 + index)
    for index, image_id in enumerate(COCO_TRAIN_IDS):
        _write_image(images / "train2014" / f"COCO_train2014_{image_id:012d}.jpg", 200 + index)
    for index, name in enumerate(GQA_IMAGES):
        _write_image(images / "gqa" / f"{name}.jpg", 300 + index)
    for index, (language, concept) in enumerate(MARVL_CONCEPTS.items()):
        for number in range(4):
            _write_image(
                images / "marvl-images" / language / "images" / concept / f"{index}-{number}.jpg",
                400 + 10 * index + number,
            )
    for index, language in enumerate(("id", "tr", "zh")):
        for number in range(4):
            _write_image(
                images / "marvl_fewshot" / language / "all" / f"{index}-n-{number}.jpg", 500 + 10 * index + number
            )
    for split, folder in (("train", "train/7"), ("dev", "dev"), ("test1", "test1")):
        for pair in range(3):
            for side in (0, 1):
                _write_image(
                    images / "nlvr2" / folder / f"{split}-{pair}-0-img{side}.png", 600 + pair * 2 + side, fmt="PNG"
                )
    for index in range(4):
        _write_image(images / "wit" / f"Wiki_image_{index}.jpg", 700 + index)


def _retrieval(root: Path) -> None:
    finetune = root / "data" / "finetune"
    flickr = [f"flickr30k-images/{image_id}.jpg" for image_id in FLICKR_IDS]
    for language in ("en", "de", "fr", "cs"):
        captions = captions_in(language)
        # train: one caption per item, image_id shared by the items of an image (and across languages)
        write_json(finetune / "multi30k" / f"train.{language}.json", [
            {"caption": captions[(index + shift) % 8], "image": flickr[index], "image_id": index}
            for index in range(6) for shift in (0, 1)
        ])  # fmt: skip
        write_json(
            finetune / "multi30k" / f"val.{language}.json",
            [{"image": flickr[index], "caption": [captions[index]], "image_id": index} for index in range(4)],
        )
        write_json(
            finetune / "multi30k" / f"test_2016_flickr.{language}.json",
            [
                {"image": flickr[index], "caption": [captions[index], captions[(index + 4) % 8]]}
                for index in range(4, 8)
            ],
        )
    coco_val = [f"val2014/COCO_val2014_{image_id:012d}.jpg" for image_id in COCO_VAL_IDS]
    coco_train = [f"train2014/COCO_train2014_{image_id:012d}.jpg" for image_id in COCO_TRAIN_IDS]
    for language in ("en", "zh", "ja"):
        write_json(finetune / "mscoco" / f"{language}.train.json", [
            {"caption": CAPTIONS[index + shift], "image": image, "image_id": f"coco_{COCO_TRAIN_IDS[index]}"}
            for index, image in enumerate(coco_train) for shift in (0, 3)
        ])  # fmt: skip
        eval_items = [
            {"image": image, "caption": [CAPTIONS[index]], "image_id": f"coco_{image_id}"}
            for index, (image, image_id) in enumerate(zip(coco_val, COCO_VAL_IDS, strict=True))
        ]
        dev_name = {"en": "en.valid.json", "zh": "zh.val.json", "ja": "ja.valid.json"}[language]
        test_name = {"en": "en.1k_test.json", "zh": "zh.test.json", "ja": "ja.1k_test.json"}[language]
        write_json(finetune / "mscoco" / dev_name, eval_items)
        write_json(finetune / "mscoco" / test_name, eval_items)
    # X-VLM English Flickr30K 1K / COCO 5K json: the same schema
    write_json(
        finetune / "flickr30k_train.json",
        [{"caption": CAPTIONS[index], "image": flickr[index], "image_id": index} for index in range(8)],
    )
    for name, indices in (("flickr30k_val.json", range(4)), ("flickr30k_test.json", range(4, 8))):
        write_json(
            finetune / name,
            [{"image": flickr[index], "caption": [CAPTIONS[index], CAPTIONS[(index + 1) % 8]]} for index in indices],
        )
    write_json(
        finetune / "coco_test.json",
        [{"image": image, "caption": [CAPTIONS[index]]} for index, image in enumerate(coco_val)],
    )

    iglue = root / "iglue" / "datasets"
    write_jsonl(iglue / "flickr30k" / "annotations" / "train_ann.jsonl", [
        {"sentences": [CAPTIONS[index], CAPTIONS[(index + 3) % 8]], "id": image_id, "img_path": f"{image_id}.jpg"}
        for index, image_id in enumerate(FLICKR_IDS[:6])
    ])  # fmt: skip
    write_jsonl(
        iglue / "flickr30k" / "annotations" / "valid_ann.jsonl",
        [
            {"sentences": [CAPTIONS[index]], "id": FLICKR_IDS[index], "img_path": f"{FLICKR_IDS[index]}.jpg"}
            for index in (6, 7)
        ]
        + [
            {"sentences": [CAPTIONS[2]], "id": COCO_VAL_IDS[0], "img_path": f"COCO_val2014_{COCO_VAL_IDS[0]:012d}.jpg"}
        ],
    )
    for language in XFLICKRCO_LANGUAGES:
        captions = captions_in(language)
        records = (
            [
                {"sentences": [captions[index]], "id": FLICKR_IDS[index], "img_path": f"{FLICKR_IDS[index]}.jpg"}
                for index in range(2)
            ]
            + [
                {"sentences": [captions[4 + index]], "id": image_id, "img_path": f"COCO_val2014_{image_id:012d}.jpg"}
                for index, image_id in enumerate(COCO_VAL_IDS[:2])
            ]
            + [{"sentences": [""], "id": FLICKR_IDS[3], "img_path": f"{FLICKR_IDS[3]}.jpg"}]
        )  # left out, as the original
        write_jsonl(iglue / "xFlickrCO" / "annotations" / language / "test.jsonl", records)
        if language != "en":
            write_jsonl(iglue / "xFlickrCO" / "annotations" / language / "train_100.jsonl", [
                {"sentences": [captions[index]], "id": FLICKR_IDS[index], "img_path": f"{FLICKR_IDS[index]}.jpg"}
                for index in range(2, 8)
            ])  # fmt: skip
            write_jsonl(
                iglue / "xFlickrCO" / "annotations_machine-translate" / language / "test_gmt.jsonl",
                [dict(record, sentences=[CAPTIONS[number]]) for number, record in enumerate(records[:4])],
            )


def wit_record(index: int, language: str, caption: str, with_image: bool = True) -> dict:
    record = {
        "image_idx": index,
        "image_url": f"https://upload.wikimedia.org/wikipedia/commons/a/ab/Wiki_image_{index}.jpg",
        "meta_url": f"https://commons.wikimedia.org/wiki/File:Wiki_image_{index}.jpg",
        "caption_reference_description": caption,
        "language": language,
        "page_url": f"https://{language}.wikipedia.org/wiki/Page_{index}",
        "wit_ix": 1000 + index,
    }
    if with_image:
        record["image_content"] = base64.b64encode(image_bytes(700 + index)).decode()
    return record


def _wit(root: Path) -> None:
    def lines(language: str, with_image: bool) -> list[dict]:
        # two captions share image 0 (grouped by image_url), one is empty (left out), one is "." (kept verbatim)
        return [
            wit_record(0, language, CAPTIONS[0], with_image),
            wit_record(0, language, CAPTIONS[1], with_image),
            wit_record(1, language, CAPTIONS[2], with_image),
            wit_record(2, language, ".", with_image),
            wit_record(3, language, "", with_image),
        ]

    for folder, with_image in (
        (root / "data" / "wit" / "annotations-bs64", True),
        (root / "iglue" / "datasets" / "wit" / "annotations", False),
    ):
        write_jsonl(
            folder / "train_en.jsonl", [wit_record(index % 4, "en", CAPTIONS[index], with_image) for index in range(8)]
        )
        write_jsonl(folder / "val_en.jsonl", lines("en", with_image))
        for language in WIT_LANGUAGES:
            write_jsonl(folder / f"test_{language}.jsonl", lines(language, with_image))
    for language in WIT_LANGUAGES:
        if language != "en":
            write_jsonl(
                root / "data" / "wit" / "annotations_machine-translate-bs64" / f"test_{language}_gmt.jsonl",
                lines(language, True)[:3],
            )


def xvnli_record(label: str, image_index: int, hypothesis: str) -> dict:
    image_id = FLICKR_IDS[image_index]
    return {
        "gold_label": label,
        "sentence1": CAPTIONS[image_index],
        "sentence2": hypothesis,
        "captionID": f"{image_id}.jpg#2",
        "pairID": f"{image_id}.jpg#2r1{label[:1]}",
        "Flikr30kID": image_id,
    }


def _xvnli(root: Path) -> None:
    annotations = root / "iglue" / "datasets" / "XVNLI" / "annotations"
    labels = ("entailment", "neutral", "contradiction")
    train = [xvnli_record(labels[index % 3], index % 8, CAPTIONS[(index * 3) % 8]) for index in range(12)]
    _zip_in_place(write_jsonl(annotations / "en" / "train.jsonl", train))
    write_jsonl(
        annotations / "en" / "dev.jsonl",
        [xvnli_record(labels[index % 3], index, CAPTIONS[index]) for index in range(4)]
        + [xvnli_record("-", 5, CAPTIONS[5])],
    )
    for language in XVNLI_LANGUAGES:
        captions = captions_in(language)
        records = [xvnli_record(labels[index % 3], 4 + index, captions[index]) for index in range(3)]
        records.append(xvnli_record("-", 7, captions[7]))  # no gold label: left out, as the original
        write_jsonl(annotations / language / "test.jsonl", records)
        if language != "en":
            write_jsonl(
                annotations / language / "train_48.jsonl",
                [xvnli_record(labels[index % 3], index, captions[index]) for index in range(4)],
            )
            write_jsonl(
                root / "iglue" / "datasets" / "XVNLI" / "annotations_machine-translate" / language / "test.jsonl",
                [xvnli_record(labels[index % 3], 4 + index, CAPTIONS[index]) for index in range(3)],
            )


def _gqa(root: Path) -> None:
    iglue = root / "iglue" / "datasets"
    answers = ["yes", "no", "left", "red"]
    write_json(
        iglue / "gqa" / "annotations" / "trainval_ans2label.json",
        {answer: index for index, answer in enumerate(answers)},
    )
    train = [
        {"img_id": GQA_IMAGES[index % 4], "sent": question, "question_id": str(20968379 + index), "label": label}
        for index, (question, label) in enumerate(
            [
                ("Is it overcast?", {"no": 1.0}),
                ("Which side is the dog on?", {"left": 1.0}),
                ("What color is the car?", {"red": 1.0, "yes": 0.3}),
                ("Is there a cat?", {"yes": 1.0}),
            ]
        )
    ]
    _zip_in_place(write_json(iglue / "gqa" / "annotations" / "train.json", train))
    write_json(iglue / "gqa" / "annotations" / "valid.json", train[:2])
    for language in XGQA_LANGUAGES:
        questions = {
            str(201307251 + index): {
                "imageId": GQA_IMAGES[index],
                "question": question,
                "answer": answer,
                "fullAnswer": f"The answer is {answer}.",
                "types": {},
            }
            for index, (question, answer) in enumerate([("Is it overcast?", "no"), ("What color is the car?", "red")])
        }
        write_json(iglue / "xGQA" / "annotations" / "few_shot" / language / "test.json", questions)
        if language != "en":
            write_json(iglue / "xGQA" / "annotations" / "few_shot" / language / "train_48.json", questions)


def marvl_record(language: str, index: int, caption: str, label: bool, few_shot: bool = False) -> dict:
    concept = MARVL_CONCEPTS[language]
    number = list(MARVL_CONCEPTS).index(language)
    if few_shot:
        number = ("id", "tr", "zh").index(language)
        left, right = f"{concept}/{number}-n-{index}.jpg", f"{concept}/{number}-n-{index + 1}.jpg"
    else:
        left, right = f"{number}-{index}.jpg", f"{number}-{index + 1}.jpg"
    return {
        "concept": concept,
        "language": language,
        "caption": caption,
        "left_img": left,
        "right_img": right,
        "annotator_info": {"annotator_id": f"{language}_01", "gender": "female", "age": 30},
        "chapter": "Basic actions and technology",
        "id": f"{language}-{index}",
        "label": label,
    }


def _nlvr(root: Path) -> None:
    iglue = root / "iglue" / "datasets"
    for split, folder_split in (("train", "train"), ("dev", "dev"), ("test", "test1")):
        records = []
        for pair in range(3):
            record = {
                "sentence": CAPTIONS[pair],
                "label": "True" if pair % 2 == 0 else "False",
                "identifier": f"{folder_split}-{pair}-0-{pair}",
                "left_url": "http://x/l.jpg",
                "right_url": "http://x/r.jpg",
                "writer": "w1",
                "synset": "n02",
                "query": "dog",
            }
            if split == "train":
                record["directory"] = 7
            records.append(record)
        write_jsonl(iglue / "nlvr2" / "annotations" / f"{split}.jsonl", records)
        write_json(root / "data" / "finetune" / "nlvr_en" / f"nlvr_{split}.json", [
            {"images": [f"{folder_split}/{'7/' if split == 'train' else ''}{folder_split}-{pair}-0-img0.png",
                        f"{folder_split}/{'7/' if split == 'train' else ''}{folder_split}-{pair}-0-img1.png"],
             "sentence": CAPTIONS[pair], "label": "True" if pair % 2 == 0 else "False"} for pair in range(3)
        ])  # fmt: skip
    marvl = iglue / "marvl"
    for language in MARVL_LANGUAGES:
        records = [marvl_record(language, index, CAPTIONS[index], index % 2 == 0) for index in range(3)]
        write_jsonl(marvl / "zero_shot" / "annotations" / f"marvl-{language}.jsonl", records)
        write_jsonl(marvl / "zero_shot" / "annotations_machine-translate" / f"marvl-{language}_gmt.jsonl", records)
    for language in ("id", "tr", "zh"):
        write_jsonl(
            marvl / "few_shot" / "annotations" / f"marvl-{language}_train10x2.jsonl",
            [marvl_record(language, index, CAPTIONS[index], index % 2 == 1, few_shot=True) for index in range(3)],
        )


def _vqa(root: Path) -> None:
    finetune = root / "data" / "finetune"
    image = f"val2014/COCO_val2014_{COCO_VAL_IDS[0]:012d}.jpg"
    write_json(finetune / "answer_list.json", ["yes", "no", "2", "red"])
    annotated = [
        {"question_id": 5000 + index, "question": question, "answer": answers, "image": image, "dataset": "vqa"}
        for index, (question, answers) in enumerate(
            [("Is this a dog?", ["yes"] * 9 + ["no"]), ("How many cats are there?", ["2"] * 6 + ["two"] * 4)]
        )
    ]
    write_json(finetune / "vqa_train.json", annotated)
    write_json(finetune / "vqa_val.json", annotated)
    write_json(
        finetune / "vqa_test.json",
        [{"question_id": 6000, "question": "What color is it?", "image": image, "dataset": "vqa"}],
    )


def build_benchmark_root(root: Path) -> Path:
    """Write the whole tiny ROOT; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    _images(root)
    _retrieval(root)
    _wit(root)
    _xvnli(root)
    _gqa(root)
    _nlvr(root)
    _vqa(root)
    return root
