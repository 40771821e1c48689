"""Benchmark readers on files in their exact distributed format (tests/benchmark_fixtures.py), and bad input."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import zipfile
import zlib

import numpy as np
import PIL.Image
import pytest
import torch
from benchmark_fixtures import (
    COCO_VAL_IDS,
    FLICKR_IDS,
    MARVL_CONCEPTS,
    image_bytes,
    wit_record,
    write_json,
    write_jsonl,
    xvnli_record,
)
from torchvision.transforms import functional as TF

from cclm_hf.data.benchmarks import (
    AnnotationFileError,
    BadRecordLog,
    BenchmarkDataError,
    EntailmentDataset,
    ImagePairDataset,
    ImageRef,
    ImageTextCollator,
    QuestionAnswerCollator,
    QuestionAnswerDataset,
    QuestionRecord,
    build_gallery,
    drop_missing_images,
    preprocess_marvl,
    read_answer_list,
    read_caption_json,
    read_gqa_json,
    read_marvl_jsonl,
    read_nlvr2_jsonl,
    read_nlvr_json,
    read_vqa_json,
    read_vqa_official,
    read_wit_jsonl,
    read_xflickrco_jsonl,
    read_xvnli,
    training_pairs,
    verify_images,
    write_vqa_submission,
)
from cclm_hf.data.images import BadSampleError, load_image
from cclm_hf.data.transforms import eval_transform


# ---------------------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------------------


def test_xvnli_reads_the_zipped_training_file_in_place(benchmark_root):
    annotations = benchmark_root / "iglue/datasets/XVNLI/annotations"
    assert not (annotations / "en/train.jsonl").exists() and (annotations / "en/train.jsonl.zip").exists()
    records = read_xvnli(annotations / "en/train.jsonl", benchmark_root / "images/flickr30k-images")
    assert len(records) == 12
    first = records[0]
    assert first.source == f"{annotations / 'en/train.jsonl.zip'}[train.jsonl]:1"
    assert first.label == 1  # entailment; contradiction 0, neutral 2
    assert [record.label for record in records[:3]] == [1, 2, 0]
    assert first.image.value == str(benchmark_root / "images/flickr30k-images" / f"{FLICKR_IDS[0]}.jpg")
    assert first.text == "a dog runs across the green park"  # the hypothesis, pre_caption'ed


def test_xvnli_leaves_out_pairs_without_gold_label_and_counts_them(benchmark_root):
    log = BadRecordLog(skip=False)
    records = read_xvnli(benchmark_root / "iglue/datasets/XVNLI/annotations/ar/test.jsonl", "/images", log=log)
    assert len(records) == 3 and log.counts == {"no_gold_label": 1}


def test_xvnli_unknown_label_names_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "test.jsonl", [xvnli_record("entailment", 0, "a dog"), xvnli_record("maybe", 1, "a cat")]
    )
    with pytest.raises(BadSampleError, match=rf"{path}:2: unknown label 'maybe'"):
        read_xvnli(path, "/images")
    log = BadRecordLog(skip=True)
    assert len(read_xvnli(path, "/images", log=log)) == 1 and log.counts == {"unknown_label": 1}


def test_malformed_jsonl_line_is_named_or_skipped(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(xvnli_record("entailment", 0, "a dog")) + '\n{"gold_label": "neutral", \n')
    with pytest.raises(BadSampleError, match=rf"{path}:2: malformed json line"):
        read_xvnli(path, "/images")
    log = BadRecordLog(skip=True)
    assert len(read_xvnli(path, "/images", log=log)) == 1 and log.counts == {"malformed_record": 1}


def test_malformed_json_file_names_line_and_column(tmp_path):
    path = tmp_path / "val.json"
    path.write_text('[{"image": "a.jpg", "caption": ["x"]},\n {"image": }]')
    with pytest.raises(AnnotationFileError, match=rf"{path}:2:\d+: malformed json"):
        read_caption_json(path, "/images")


def test_zip_without_the_expected_member_says_which_archive_to_unzip(tmp_path):
    archive = tmp_path / "train.jsonl.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.jsonl", "{}\n")
        handle.writestr("b.jsonl", "{}\n")
    with pytest.raises(AnnotationFileError, match=rf"Unzip it \(`unzip {archive}"):
        read_xvnli(tmp_path / "train.jsonl", "/images")
    with pytest.raises(AnnotationFileError, match="annotation file not found"):
        read_xvnli(tmp_path / "dev.jsonl", "/images")


def test_zip_passed_directly_and_macos_folders_are_ignored(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("__MACOSX/._train.jsonl", "junk")
        handle.writestr("train/train.jsonl", json.dumps(xvnli_record("neutral", 0, "a dog")) + "\n")
    (record,) = read_xvnli(archive, "/images")
    assert record.label == 2 and record.source == f"{archive}[train/train.jsonl]:1"


def test_gqa_list_json_zipped_and_xgqa_dict_json(benchmark_root):
    annotations = benchmark_root / "iglue/datasets/gqa/annotations"
    train = read_gqa_json(annotations / "train.json", benchmark_root / "images/gqa")
    assert len(train) == 4
    assert train[2].answers == {"red": 0.5, "yes": 0.5}  # 1 / len(label); the scores are ignored
    assert train[1].question == "which side is the dog on"  # pre_question
    assert train[0].image.value.endswith("images/gqa/n1000.jpg") and train[0].question_id == "20968379"
    test = read_gqa_json(benchmark_root / "iglue/datasets/xGQA/annotations/few_shot/de/test.json", "/gqa")
    assert [record.question_id for record in test] == ["201307251", "201307252"]
    assert test[1].answers == {"red": 1.0} and test[1].source.endswith("test.json[201307252]")
    assert read_answer_list(annotations / "trainval_ans2label.json") == ["yes", "no", "left", "red"]


def test_vqa_xvlm_json_weights_and_official_files(benchmark_root, tmp_path):
    train = read_vqa_json(benchmark_root / "data/finetune/vqa_train.json", benchmark_root / "images")
    assert train[0].answers == {"yes": 0.9, "no": pytest.approx(0.1)}
    assert train[1].answers == {"2": 0.6, "two": 0.4} and len(train[1].annotator_answers) == 10
    (test,) = read_vqa_json(benchmark_root / "data/finetune/vqa_test.json", benchmark_root / "images")
    assert test.answers == {} and test.question_id == 6000
    questions = {
        "data_subtype": "val2014",
        "questions": [{"image_id": COCO_VAL_IDS[0], "question": "Is this a dog?", "question_id": 11}],
    }
    annotations = {
        "annotations": [
            {
                "question_id": 11,
                "image_id": COCO_VAL_IDS[0],
                "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)],
            }
        ]
    }
    write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", questions)
    write_json(tmp_path / "v2_mscoco_val2014_annotations.json", annotations)  # found by its official name
    (record,) = read_vqa_official(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", benchmark_root / "images")
    assert record.answers == {"yes": 1.0} and record.annotator_answers == ["yes"] * 10
    assert os.path.isfile(record.image.value)  # images/val2014/COCO_val2014_000000391895.jpg
    write_json(
        tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", {**questions, "data_subtype": "test-dev2015"}
    )
    (record,) = read_vqa_official(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", "/images")
    assert record.image.value == f"/images/test2015/COCO_test2015_{COCO_VAL_IDS[0]:012d}.jpg"


def test_vqa_submission_file(tmp_path):
    path = write_vqa_submission({5: "yes", "7": "2"}, tmp_path / "vqa_result.json", expected_question_ids=[5, 7])
    assert json.loads(path.read_text()) == [{"question_id": 5, "answer": "yes"}, {"question_id": 7, "answer": "2"}]
    with pytest.raises(BenchmarkDataError, match="more than one answer"):
        write_vqa_submission([(5, "yes"), (5, "no")], tmp_path / "x.json")
    with pytest.raises(BenchmarkDataError, match="1 VQA questions have no answer"):
        write_vqa_submission({5: "yes"}, tmp_path / "x.json", expected_question_ids=[5, 8])
    with pytest.raises(BenchmarkDataError, match="not an integer"):
        write_vqa_submission({"q5": "yes"}, tmp_path / "x.json")


def test_nlvr2_jsonl_and_xvlm_json_give_the_same_pairs(benchmark_root):
    root = benchmark_root / "images/nlvr2"
    annotations = benchmark_root / "iglue/datasets/nlvr2/annotations"
    for split in ("train", "dev", "test"):
        from_jsonl = read_nlvr2_jsonl(annotations / f"{split}.jsonl", root)
        from_json = read_nlvr_json(benchmark_root / f"data/finetune/nlvr_en/nlvr_{split}.json", root)
        assert [(r.left, r.right, r.label, r.sentence) for r in from_jsonl] == [
            (r.left, r.right, r.label, r.sentence) for r in from_json
        ]
        assert all(os.path.isfile(image.value) for record in from_jsonl for image in record.images)
    assert [record.label for record in from_jsonl] == [1, 0, 1]  # "True" / "False"
    train = read_nlvr2_jsonl(annotations / "train.jsonl", root)
    assert train[0].left.value == str(root / "train/7/train-0-0-img0.png")  # `directory` of the training split


def test_nlvr_unknown_label(tmp_path):
    path = write_json(
        tmp_path / "nlvr_dev.json", [{"images": ["a.png", "b.png"], "sentence": "two dogs", "label": "yes"}]
    )
    with pytest.raises(BadSampleError, match=r"nlvr_dev.json\[0\]: unknown label 'yes'"):
        read_nlvr_json(path, "/images")


def test_marvl_jsonl_non_ascii_concepts_few_shot_and_original_preprocessing(benchmark_root, tmp_path):
    marvl = benchmark_root / "iglue/datasets/marvl"
    images = benchmark_root / "images"
    zh = read_marvl_jsonl(marvl / "zero_shot/annotations/marvl-zh.jsonl", images)
    assert [record.label for record in zh] == [1, 0, 1]  # booleans
    assert f"marvl-images/zh/images/{MARVL_CONCEPTS['zh']}/" in zh[0].left.value and "花生" in zh[0].left.value
    assert all(os.path.isfile(image.value) for record in zh for image in record.images)
    few = read_marvl_jsonl(marvl / "few_shot/annotations/marvl-id_train10x2.jsonl", images, few_shot=True)
    assert few[0].left.value == str(images / "marvl_fewshot/id/all/0-n-0.jpg")  # the concept folder is dropped

    written = preprocess_marvl(marvl, tmp_path / "data/marvl")
    names = sorted(path.name for path in written)
    assert "marvl-zh.json" in names and "marvl-id_train10x2.json" in names and "marvl-zh_gmt.json" not in names
    items = json.loads((tmp_path / "data/marvl/marvl-zh.json").read_text())
    raw = [json.loads(line) for line in (marvl / "zero_shot/annotations/marvl-zh.jsonl").read_text().splitlines()]
    assert items[0] == {
        "sentence": raw[0]["caption"],
        "label": True,
        "images": [
            f"images/marvl-images/zh/images/{MARVL_CONCEPTS['zh']}/{raw[0]['left_img']}",
            f"images/marvl-images/zh/images/{MARVL_CONCEPTS['zh']}/{raw[0]['right_img']}",
        ],
    }
    # NLVR.py reads the preprocessed files relative to the data root: the same images as the jsonl reader
    again = read_nlvr_json(tmp_path / "data/marvl/marvl-zh.json", benchmark_root)
    assert [(r.left, r.right, r.label) for r in again] == [(r.left, r.right, r.label) for r in zh]


def test_xflickrco_coco_and_flickr_roots_empty_sentences(benchmark_root):
    log = BadRecordLog(skip=False)
    records = read_xflickrco_jsonl(
        benchmark_root / "iglue/datasets/xFlickrCO/annotations/ja/test.jsonl", "/flickr", "/coco", log=log
    )
    assert [record.image.value for record in records] == [
        f"/flickr/{FLICKR_IDS[0]}.jpg",
        f"/flickr/{FLICKR_IDS[1]}.jpg",
        f"/coco/COCO_val2014_{COCO_VAL_IDS[0]:012d}.jpg",
        f"/coco/COCO_val2014_{COCO_VAL_IDS[1]:012d}.jpg",
    ]
    assert log.counts == {"empty_caption": 1}  # the all-empty record is left out, as the original


def test_wit_base64_or_files_grouped_by_image_url(benchmark_root):
    log = BadRecordLog(skip=False)
    bs64 = read_wit_jsonl(benchmark_root / "data/wit/annotations-bs64/test_ko.jsonl", None, log=log)
    assert log.counts == {"empty_caption": 1}
    assert not bs64[0].image.is_path and load_image(bs64[0].image.value).size == (40, 32)
    assert bs64[3].captions == ["."]  # cleans to nothing: kept verbatim, as the original
    gallery = build_gallery(bs64)
    assert len(gallery.images) == 3 and gallery.text_image_index == [0, 0, 1, 2]  # two captions of image 0
    files = read_wit_jsonl(
        benchmark_root / "iglue/datasets/wit/annotations/test_ko.jsonl", benchmark_root / "images/wit"
    )
    assert files[2].image.value == str(benchmark_root / "images/wit/Wiki_image_1.jpg") and os.path.isfile(
        files[2].image.value
    )
    with pytest.raises(BadSampleError, match="no base64 'image_content'"):
        read_wit_jsonl(benchmark_root / "iglue/datasets/wit/annotations/test_ko.jsonl", None)


def test_caption_json_train_positives_across_languages_and_eval_lists(benchmark_root):
    multi30k = benchmark_root / "data/finetune/multi30k"
    records = []
    for language in ("en", "de"):
        records += read_caption_json(multi30k / f"train.{language}.json", benchmark_root / "images")
    pairs = training_pairs(records)
    assert len(pairs) == 24 and len({pair.image_index for pair in pairs}) == 6  # image ids shared across languages
    by_image = {}
    for pair in pairs:
        by_image.setdefault(pair.image_index, set()).add(pair.image.value)
    assert all(len(paths) == 1 for paths in by_image.values())
    test = read_caption_json(multi30k / "test_2016_flickr.en.json", benchmark_root / "images")
    gallery = build_gallery(test)
    assert (
        len(gallery.images) == 4 and len(gallery.texts) == 8 and gallery.text_image_index == [0, 0, 1, 1, 2, 2, 3, 3]
    )
    assert all(os.path.isfile(image.value) for image in gallery.images)


def test_empty_caption_is_a_bad_record(tmp_path):
    path = write_json(
        tmp_path / "test.json", [{"image": "a.jpg", "caption": ["a dog", "?!"]}, {"image": "b.jpg", "caption": ""}]
    )
    with pytest.raises(BadSampleError, match=r"test.json\[0\] caption 1: caption is empty after cleaning"):
        read_caption_json(path, "/images")
    log = BadRecordLog(skip=True)
    records = read_caption_json(path, "/images", log=log)
    assert [record.captions for record in records] == [["a dog"]] and log.counts == {"empty_text": 2}
    hypothesis = write_jsonl(tmp_path / "x.jsonl", [xvnli_record("neutral", 0, "   ")])
    with pytest.raises(BadSampleError, match="x.jsonl:1: hypothesis is empty"):
        read_xvnli(hypothesis, "/images")


# ---------------------------------------------------------------------------------------------------------------------
# Images: existence before anything starts, decoding, modes
# ---------------------------------------------------------------------------------------------------------------------


def _copy_flickr(benchmark_root, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(benchmark_root / "images/flickr30k-images", images)
    return images


def test_missing_images_are_named_with_annotation_record_and_path(benchmark_root, tmp_path):
    images = _copy_flickr(benchmark_root, tmp_path)
    (images / f"{FLICKR_IDS[5]}.jpg").unlink()
    path = benchmark_root / "iglue/datasets/XVNLI/annotations/fr/test.jsonl"
    records = read_xvnli(path, images)
    with pytest.raises(BenchmarkDataError) as error:
        drop_missing_images(records, BadRecordLog(skip=False), str(images))
    message = str(error.value)
    assert message.startswith("1 record(s) refer to missing images")
    assert f"{path}:2: image file not found: {images / (FLICKR_IDS[5] + '.jpg')}" in message
    assert "--skip_bad_samples" in message
    log = BadRecordLog(skip=True)
    kept = drop_missing_images(records, log)
    assert len(kept) == 2 and log.counts == {"missing_image": 1}


@pytest.mark.parametrize("damage", ["empty", "truncated", "not_an_image"])
def test_broken_image_files_are_found_before_evaluation(benchmark_root, tmp_path, damage):
    images = _copy_flickr(benchmark_root, tmp_path)
    target = images / f"{FLICKR_IDS[4]}.jpg"
    data = target.read_bytes()
    target.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "not_an_image": b"GIF89a junk"}[damage])
    path = benchmark_root / "iglue/datasets/XVNLI/annotations/fr/test.jsonl"
    records = read_xvnli(path, images)
    with pytest.raises(BadSampleError, match=rf"{path}:1: .*{FLICKR_IDS[4]}\.jpg"):
        verify_images(records, BadRecordLog(skip=False))
    log = BadRecordLog(skip=True)
    assert len(verify_images(records, log)) == 2 and log.counts == {"unreadable_image": 1}


def test_undecodable_base64_wit_image(tmp_path):
    good = wit_record(0, "ko", "a dog")
    bad = wit_record(1, "ko", "a cat") | {"image_content": "not base64 at all!"}
    truncated = wit_record(2, "ko", "a boat") | {"image_content": base64.b64encode(image_bytes(3)[:60]).decode()}
    path = write_jsonl(tmp_path / "test_ko.jsonl", [good, bad, truncated])
    records = read_wit_jsonl(path)
    with pytest.raises(BadSampleError, match=rf"{path}:2: invalid base64 image string"):
        verify_images(records, BadRecordLog(skip=False))
    log = BadRecordLog(skip=True)
    assert [r.source for r in verify_images(records, log)] == [f"{path}:1"] and log.counts == {"unreadable_image": 2}


def test_cmyk_jpeg_loads_as_pil_convert_rgb(tmp_path):
    rgb = PIL.Image.open(io.BytesIO(image_bytes(5, size=(24, 16)))).convert("RGB")
    buffer = io.BytesIO()
    rgb.convert("CMYK").save(buffer, format="JPEG")
    expected = PIL.Image.open(io.BytesIO(buffer.getvalue()))
    assert expected.mode == "CMYK"
    np.testing.assert_array_equal(np.asarray(load_image(buffer.getvalue())), np.asarray(expected.convert("RGB")))


def _png_16_bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_png_is_scaled_to_8_bits_not_saturated():
    gray = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535
    buffer = io.BytesIO()
    PIL.Image.fromarray(gray).save(buffer, format="PNG")
    assert PIL.Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
    loaded = np.asarray(load_image(buffer.getvalue()))
    np.testing.assert_array_equal(loaded[..., 0], np.arange(256).reshape(16, 16))  # v * 257 -> v
    assert (loaded[..., 0] == loaded[..., 2]).all()
    colour = np.stack([gray, gray[::-1], np.full_like(gray, 32768)], axis=-1)
    loaded = np.asarray(load_image(_png_16_bit_rgb(colour)))
    np.testing.assert_allclose(loaded.astype(float), colour / 257.0, atol=1)


# ---------------------------------------------------------------------------------------------------------------------
# Datasets and collators
# ---------------------------------------------------------------------------------------------------------------------


def test_broken_training_image_is_replaced_and_counted_or_raised(benchmark_root, tmp_path):
    images = _copy_flickr(benchmark_root, tmp_path)
    (images / f"{FLICKR_IDS[0]}.jpg").write_bytes(b"")
    records = read_xvnli(benchmark_root / "iglue/datasets/XVNLI/annotations/en/train.jsonl", images)
    strict = EntailmentDataset(records, eval_transform(32))
    with pytest.raises(BenchmarkDataError, match=rf"train.jsonl\]:1: image file '.*{FLICKR_IDS[0]}.jpg' is empty"):
        strict[0]
    lenient = EntailmentDataset(records, eval_transform(32), skip_bad_samples=True)
    sample = lenient[0]
    assert sample["label"] == records[1].label and lenient.bad_samples.counts() == {"unreadable_image": 1}


def test_image_pairs_batch_as_b_2_3_h_w(benchmark_root):
    records = read_nlvr2_jsonl(
        benchmark_root / "iglue/datasets/nlvr2/annotations/dev.jsonl", benchmark_root / "images/nlvr2"
    )
    dataset = ImagePairDataset(records, eval_transform(32))
    batch = ImageTextCollator(_FakeTokenizer())([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32)
    assert batch["labels"].tolist() == [1, 0]
    left = eval_transform(32)(records[0].left.load("x"))
    torch.testing.assert_close(batch["pixel_values"][0, 0], left)


def test_vqa_careful_flip_skips_left_and_right(benchmark_root):
    image = ImageRef(str(benchmark_root / "images/gqa/n1000.jpg"))
    plain = eval_transform(32)(image.load("x"))
    flipped = eval_transform(32)(TF.hflip(image.load("x")))
    spatial = QuestionRecord("s", image, "what is on the left", 1, {"cup": 1.0})
    by_answer = QuestionRecord("s", image, "where is the cup", 2, {"Right": 1.0})
    neutral = QuestionRecord("s", image, "what color is the cup", 3, {"red": 1.0})
    dataset = QuestionAnswerDataset([spatial, by_answer, neutral], eval_transform(32), careful_flip=True)
    torch.manual_seed(0)
    seen = {index: set() for index in range(3)}
    for _ in range(12):
        for index in range(3):
            pixels = dataset[index]["pixel_values"]
            seen[index].add(
                "flipped" if torch.equal(pixels, flipped) else "plain" if torch.equal(pixels, plain) else "?"
            )
    assert seen == {0: {"plain"}, 1: {"plain"}, 2: {"plain", "flipped"}}


def test_question_answer_collator_flattens_answers(benchmark_root):
    records = read_gqa_json(
        benchmark_root / "iglue/datasets/gqa/annotations/train.json", benchmark_root / "images/gqa"
    )
    dataset = QuestionAnswerDataset(records, eval_transform(32))
    batch = QuestionAnswerCollator(_FakeTokenizer())([dataset[2], dataset[0]])
    assert batch["answers_per_question"].tolist() == [2, 1]
    assert batch["answer_weights"].tolist() == [0.5, 0.5, 1.0]
    assert batch["answer_input_ids"].shape[0] == 3 and batch["input_ids"].shape[0] == 2


class _FakeTokenizer:
    """Whitespace tokenizer with the XLM-R call signature: `<s>`=0, `</s>`=2, pad=1, words hashed to 4..99."""

    def __call__(
        self, texts, padding, truncation, max_length, return_attention_mask, return_token_type_ids, return_tensors
    ):
        ids = [[0] + [4 + hash(word) % 96 for word in text.split()] + [2] for text in texts]
        if truncation:
            ids = [row[:max_length] for row in ids]
        width = max(len(row) for row in ids)
        input_ids = torch.tensor([row + [1] * (width - len(row)) for row in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 1).long()}
