"""`pre_caption` / `pre_question` (the original CCLM text cleaning) and `CCLMProcessor`."""

import itertools
import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from cclm_hf.image_processing_cclm import CCLMImageProcessor
from cclm_hf.image_processing_pil_cclm import CCLMImageProcessorPil
from cclm_hf.processing_cclm import CCLMProcessor, pre_caption, pre_question


# ---------------------------------------------------------------------------------------------------------------------
# pre_caption / pre_question
# ---------------------------------------------------------------------------------------------------------------------

PUNCTUATION = ",.'!?\"()*#:;~"


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # Every character of the punctuation set becomes a space (and the spaces are then collapsed).
        ("a,b.c'd!e?f\"g(h)i*j#k:l;m~n", "a b c d e f g h i j k l m n"),
        ("Hello, World!", "hello world"),
        # Hyphen and slash too.
        ("A well-known T-shirt/jacket", "a well known t shirt jacket"),
        # <person> placeholders (after lower-casing, so <PERSON> as well).
        ("<person> rides a horse next to <PERSON>.", "person rides a horse next to person"),
        ("<person>", "person"),
        # Runs of >= 2 whitespace characters become one space; a single tab is kept; trailing newline stripped.
        ("  many   spaces\t\tand\ttabs \n", "many spaces and\ttabs"),
        ("a dog\n", "a dog"),
        ("  padded  ", "padded"),
        # Non-ASCII punctuation and other characters are kept.
        ("Un chien à côté d'un vélo.", "un chien à côté d un vélo"),
        ("你好，世界。", "你好，世界。"),
        ("x+y=z & [a] {b} <c> @d $e %f ^g _h |i", "x+y=z & [a] {b} <c> @d $e %f ^g _h |i"),
    ],
)
def test_pre_caption_cleaning(caption, expected):
    assert pre_caption(caption, max_words=30) == expected


def test_pre_caption_each_punctuation_character():
    for character in PUNCTUATION + "-/":
        assert pre_caption(f"left{character}right", max_words=30) == "left right", character


def test_pre_caption_truncation():
    words = [f"w{i}" for i in range(40)]
    assert pre_caption(" ".join(words), max_words=30) == " ".join(words[:30])
    assert pre_caption(" ".join(words[:30]), max_words=30) == " ".join(words[:30])
    # Words are counted after cleaning: the punctuation does not count.
    assert pre_caption("One, two; three: four!", max_words=3) == "one two three"
    assert pre_caption("a b c", max_words=1) == "a"


def test_pre_caption_cjk_is_effectively_not_truncated():
    # No spaces, hence a single "word" as far as the original word count is concerned.
    chinese = "一只狗在绿色的公园里奔跑" * 10
    assert pre_caption(chinese, max_words=3) == chinese
    assert pre_caption("一只狗 在公园里 奔跑 了", max_words=2) == "一只狗 在公园里"


@pytest.mark.parametrize("caption", ["", "   ", "?!...", "\n", "--//"])
def test_pre_caption_empty_result_raises(caption):
    with pytest.raises(ValueError, match="pre_caption") as error:
        pre_caption(caption, max_words=30)
    assert repr(caption) in str(error.value)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What color is the dog's collar?", "what color is the dog s collar"),
        # No whitespace collapsing, leading spaces kept, only trailing spaces stripped.
        ("Is it  red?", "is it  red"),
        (" what?", " what"),
        ("left-right/up", "left right up"),
        # No <person> rule, and an empty result is allowed.
        ("<person> here", "<person> here"),
        ("?", ""),
    ],
)
def test_pre_question_cleaning(question, expected):
    assert pre_question(question, max_words=30) == expected


def test_pre_question_truncation_counts_empty_words():
    assert pre_question("a  b c", max_words=3) == "a  b"
    assert pre_question("How many dogs are there in the picture?", max_words=4) == "how many dogs are"
    assert pre_question("一只狗在哪里？", max_words=1) == "一只狗在哪里？"


def _spec_pre_caption(caption: str, max_words: int) -> str:
    """An independent implementation of the cleaning spec (translate table and run-grouping, no regexes)."""
    text = caption.lower().translate({ord(c): " " for c in PUNCTUATION + "-/"}).replace("<person>", "person")
    pieces = []
    for is_space, run in itertools.groupby(text, key=str.isspace):
        run = "".join(run)
        pieces.append(" " if is_space and len(run) >= 2 else run)
    text = "".join(pieces).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def test_pre_caption_matches_spec_on_random_strings():
    alphabet = list("aBc xyZ") + list(PUNCTUATION) + ["-", "/", "\t", "\n", "  ", "<person>", "<PERSON>", "猫", "é"]
    rng = random.Random(0)
    checked = 0
    for _ in range(2000):
        caption = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        max_words = rng.randint(1, 6)
        expected = _spec_pre_caption(caption, max_words)
        if expected:
            assert pre_caption(caption, max_words) == expected, repr(caption)
            checked += 1
        else:
            with pytest.raises(ValueError):
                pre_caption(caption, max_words)
    assert checked > 1500


# ---------------------------------------------------------------------------------------------------------------------
# CCLMProcessor
# ---------------------------------------------------------------------------------------------------------------------

RAW_CAPTIONS = ["A dog runs across the GREEN park!", "Zwei Katzen schlafen auf einem Holztisch."]


@pytest.fixture
def processor(tiny_tokenizer):
    return CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer)


@pytest.fixture
def images(natural_image):
    return [natural_image(120, 160, seed=1), natural_image(90, 60, seed=2)]


def test_images_and_text(processor, images, tiny_tokenizer):
    outputs = processor(images=images, text=RAW_CAPTIONS, padding=True, return_tensors="pt")
    assert set(outputs.keys()) == {"input_ids", "attention_mask", "pixel_values"}
    assert outputs["pixel_values"].shape == (2, 3, 224, 224)
    expected_text = tiny_tokenizer(RAW_CAPTIONS, padding=True, return_tensors="pt")
    assert torch.equal(outputs["input_ids"], expected_text["input_ids"])
    assert torch.equal(outputs["attention_mask"], expected_text["attention_mask"])
    assert torch.equal(outputs["pixel_values"], processor.image_processor(images, return_tensors="pt")["pixel_values"])
    assert sorted(processor.model_input_names) == ["attention_mask", "input_ids", "pixel_values"]


def test_single_modality_calls(processor, images):
    text_only = processor(text=RAW_CAPTIONS[0], return_tensors="pt")
    assert set(text_only.keys()) == {"input_ids", "attention_mask"}
    assert text_only["input_ids"].shape[0] == 1
    image_only = processor(images=images[0], return_tensors="pt")
    assert set(image_only.keys()) == {"pixel_values"}
    assert image_only["pixel_values"].shape == (1, 3, 224, 224)
    # Positional order follows transformers: images first.
    assert torch.equal(processor(images[0], return_tensors="pt")["pixel_values"], image_only["pixel_values"])
    with pytest.raises(ValueError):
        processor()


def test_padding_and_truncation(processor):
    padded = processor(text=RAW_CAPTIONS, padding="max_length", max_length=40, return_tensors="pt")
    assert padded["input_ids"].shape == (2, 40)
    pads = padded["attention_mask"] == 0
    assert pads.any()
    assert (padded["input_ids"][pads] == 1).all()
    assert (padded["input_ids"][:, 0] == 0).all()

    long_text = " ".join(RAW_CAPTIONS * 5)
    truncated = processor(text=long_text, truncation=True, max_length=8, return_tensors="pt")
    assert truncated["input_ids"].shape == (1, 8)
    assert truncated["input_ids"][0, 0] == 0 and truncated["input_ids"][0, -1] == 2
    assert processor(text=long_text, return_tensors="pt")["input_ids"].shape[1] > 8

    # Without return_tensors, plain lists come back.
    assert isinstance(processor(text=RAW_CAPTIONS)["input_ids"][0], list)


def test_no_token_type_ids(processor, images):
    for kwargs in ({}, {"return_token_type_ids": True}, {"text_kwargs": {"return_token_type_ids": True}}):
        outputs = processor(images=images, text=RAW_CAPTIONS, padding=True, return_tensors="pt", **kwargs)
        assert "token_type_ids" not in outputs
        assert "input_ids" in outputs


def test_image_kwargs_are_forwarded(processor, images):
    outputs = processor(images=images, size={"height": 32, "width": 48}, return_tensors="pt")
    assert outputs["pixel_values"].shape == (2, 3, 32, 48)
    outputs = processor(images=images, images_kwargs={"size": {"height": 40, "width": 40}}, return_tensors="pt")
    assert outputs["pixel_values"].shape == (2, 3, 40, 40)


def test_caption_cleaning_off_by_default(processor, tiny_tokenizer):
    assert processor.clean_captions is False and processor.max_words == 30
    assert processor(text=RAW_CAPTIONS)["input_ids"] == tiny_tokenizer(RAW_CAPTIONS)["input_ids"]


def test_caption_cleaning(tiny_tokenizer):
    cleaned = [pre_caption(caption, 30) for caption in RAW_CAPTIONS]
    assert cleaned != RAW_CAPTIONS
    expected = tiny_tokenizer(cleaned)["input_ids"]
    assert expected != tiny_tokenizer(RAW_CAPTIONS)["input_ids"]

    cleaning = CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer, clean_captions=True)
    plain = CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer)
    assert cleaning(text=RAW_CAPTIONS)["input_ids"] == expected
    assert cleaning(text=RAW_CAPTIONS[0])["input_ids"] == expected[0]
    # Per-call overrides, both ways.
    assert plain(text=RAW_CAPTIONS, clean_captions=True)["input_ids"] == expected
    assert cleaning(text=RAW_CAPTIONS, clean_captions=False)["input_ids"] == tiny_tokenizer(RAW_CAPTIONS)["input_ids"]
    # Word budget, from init and per call.
    short = tiny_tokenizer([pre_caption(caption, 3) for caption in RAW_CAPTIONS])["input_ids"]
    assert CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer, True, 3)(text=RAW_CAPTIONS)["input_ids"] == short
    assert cleaning(text=RAW_CAPTIONS, max_words=3)["input_ids"] == short
    # The original raises on captions that clean to nothing.
    with pytest.raises(ValueError, match="pre_caption"):
        cleaning(text=["a dog", "?!"])
    assert cleaning.clean_text(RAW_CAPTIONS) == cleaned
    assert cleaning.clean_text(RAW_CAPTIONS[1], max_words=2) == "zwei katzen"


def test_invalid_init_arguments(tiny_tokenizer):
    with pytest.raises(TypeError):
        CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer, clean_captions="yes")
    for max_words in (0, -3, 2.5, True):
        with pytest.raises(ValueError):
            CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer, max_words=max_words)
    with pytest.raises(TypeError):
        CCLMProcessor(tiny_tokenizer, CCLMImageProcessor())  # swapped


def test_batch_decode(processor, multilingual_captions):
    captions = [multilingual_captions["en"][0], multilingual_captions["zh"][0]]
    ids = processor(text=captions, padding=True)["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == captions
    assert processor.decode(ids[1], skip_special_tokens=True) == captions[1]


def test_save_and_load(tmp_path, tiny_tokenizer, images):
    image_processor = CCLMImageProcessorPil(size={"height": 96, "width": 96})
    processor = CCLMProcessor(image_processor, tiny_tokenizer, clean_captions=True, max_words=7)
    processor.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "CCLMProcessor"
    assert (saved["clean_captions"], saved["max_words"]) == (True, 7)
    assert saved["image_processor"]["size"] == {"height": 96, "width": 96}

    def check_same_options(reloaded, image_processor_class):
        assert type(reloaded) is CCLMProcessor
        assert (reloaded.clean_captions, reloaded.max_words) == (True, 7)
        assert type(reloaded.image_processor) is image_processor_class
        assert reloaded.image_processor.size.height == reloaded.image_processor.size.width == 96
        assert len(reloaded.tokenizer) == len(tiny_tokenizer)

    # Like every transformers image processor, the torchvision backend is the default on reload; `backend="pil"`
    # gets the PIL one back.
    reloaded_pil = CCLMProcessor.from_pretrained(tmp_path, backend="pil")
    check_same_options(reloaded_pil, CCLMImageProcessorPil)
    check_same_options(CCLMProcessor.from_pretrained(tmp_path), CCLMImageProcessor)
    check_same_options(AutoProcessor.from_pretrained(tmp_path), CCLMImageProcessor)

    texts = ["A man, riding a RED bicycle - down the street; and then some more words!", "一只狗在公园里奔跑。"]
    expected = processor(images=images, text=texts, padding=True, return_tensors="pt")
    actual = reloaded_pil(images=images, text=texts, padding=True, return_tensors="pt")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    # The cleaning option round-tripped: the first text was cleaned and cut to 7 words.
    decoded = reloaded_pil.batch_decode(actual["input_ids"], skip_special_tokens=True)
    assert decoded[0] == "a man riding a red bicycle down"

    # Options can be overridden at load time.
    assert CCLMProcessor.from_pretrained(tmp_path, clean_captions=False).clean_captions is False


def test_pixel_values_match_pil_backend_closely(tiny_tokenizer, images):
    torchvision_processor = CCLMProcessor(CCLMImageProcessor(), tiny_tokenizer)
    pil_processor = CCLMProcessor(CCLMImageProcessorPil(), tiny_tokenizer)
    fast = torchvision_processor(images=images, return_tensors="np")["pixel_values"]
    slow = pil_processor(images=images, return_tensors="np")["pixel_values"]
    # Landscape 160x120 input (same resize pass order in PIL and torchvision): within 2 grey levels, see
    # test_image_processing.py.
    assert np.abs(fast[0] - slow[0]).max() <= 2 / 255 / 0.26130258 + 1e-5
