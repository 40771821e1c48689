"""`train_xlm_roberta_tokenizer`: XLM-R layout, CJK handling, save / load offline."""

import re

import pytest
from transformers import AutoTokenizer, XLMRobertaTokenizer

from cclm_hf.tokenizer_training import CJK_CHARACTER_PATTERN, train_xlm_roberta_tokenizer


CJK_RE = re.compile(CJK_CHARACTER_PATTERN)
METASPACE = "\u2581"


def all_pieces(tokenizer) -> list[str]:
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


def test_xlm_roberta_special_token_layout(tiny_tokenizer):
    assert isinstance(tiny_tokenizer, XLMRobertaTokenizer)
    assert tiny_tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (tiny_tokenizer.bos_token_id, tiny_tokenizer.pad_token_id) == (0, 1)
    assert (tiny_tokenizer.eos_token_id, tiny_tokenizer.unk_token_id) == (2, 3)
    assert tiny_tokenizer.cls_token_id == 0 and tiny_tokenizer.sep_token_id == 2
    assert tiny_tokenizer.mask_token == "<mask>"
    assert tiny_tokenizer.mask_token_id == len(tiny_tokenizer) - 1
    # The vocabulary was trained up to the requested size and nothing was appended behind `<mask>`.
    assert len(tiny_tokenizer) == tiny_tokenizer.vocab_size == 400
    assert len(set(all_pieces(tiny_tokenizer))) == len(tiny_tokenizer)
    assert tiny_tokenizer.model_max_length == 512


def test_encoding_looks_like_xlm_roberta(tiny_tokenizer):
    encoding = tiny_tokenizer(["A dog runs.", "Ein Mann fährt ein rotes Fahrrad die Straße hinunter."], padding=True)
    short, long = encoding["input_ids"]
    assert short[0] == long[0] == 0
    assert long[-1] == 2
    end = short.index(2)
    assert set(short[end + 1 :]) == {1}  # right padding with <pad> = 1
    assert encoding["attention_mask"][0] == [1] * (end + 1) + [0] * (len(short) - end - 1)
    assert "token_type_ids" not in encoding
    assert tiny_tokenizer("<mask> dog", add_special_tokens=False)["input_ids"][0] == tiny_tokenizer.mask_token_id
    # Characters never seen in training map to <unk>.
    assert 3 in tiny_tokenizer("Ω", add_special_tokens=False)["input_ids"]


def test_round_trip_decoding(tiny_tokenizer, multilingual_captions):
    for captions in multilingual_captions.values():
        for caption in captions[:3]:
            ids = tiny_tokenizer(caption)["input_ids"]
            assert tiny_tokenizer.unk_token_id not in ids
            assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == caption


def test_cjk_text_is_tokenized_into_characters(tiny_tokenizer):
    # No piece of the vocabulary spans two CJK characters, or a word start and a CJK character ...
    for piece in all_pieces(tiny_tokenizer):
        if CJK_RE.search(piece):
            assert len(piece) == 1, piece
    # ... so Chinese and Japanese (no spaces) come out one character per token, also in unseen combinations.
    for text in ["一只狗在公园里奔跑", "两只猫坐在长椅上", "犬が公園を走っている"]:
        tokens = tiny_tokenizer.tokenize(text)
        assert tokens == [METASPACE] + list(text)
    assert tiny_tokenizer.tokenize("dog 公园")[-3:] == [METASPACE, "公", "园"]


def test_without_cjk_splitting_phrases_become_pieces(multilingual_captions):
    texts = [caption for captions in multilingual_captions.values() for caption in captions]
    tokenizer = train_xlm_roberta_tokenizer(texts, vocab_size=400, split_cjk_characters=False)
    multi_character_cjk_pieces = [
        piece for piece in all_pieces(tokenizer) if CJK_RE.search(piece) and len(piece.lstrip(METASPACE)) > 1
    ]
    assert multi_character_cjk_pieces  # what `split_cjk_characters=True` prevents


def test_save_and_load_offline(tmp_path, tiny_tokenizer, multilingual_captions):
    tiny_tokenizer.save_pretrained(tmp_path)
    texts = [captions[0] for captions in multilingual_captions.values()] + ["一只狗在公园里奔跑", "<mask> Ω"]
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path), XLMRobertaTokenizer.from_pretrained(tmp_path)):
        assert type(reloaded) is XLMRobertaTokenizer
        assert len(reloaded) == len(tiny_tokenizer)
        assert reloaded.mask_token_id == len(reloaded) - 1
        assert (reloaded.pad_token_id, reloaded.model_max_length) == (1, 512)
        assert reloaded(texts, padding=True)["input_ids"] == tiny_tokenizer(texts, padding=True)["input_ids"]
        # CJK stays character-level after reloading (XLMRobertaTokenizer rebuilds its own pre-tokenizer on load).
        assert reloaded.tokenize("两只猫坐在长椅上") == [METASPACE] + list("两只猫坐在长椅上")


def test_vocab_size_is_an_upper_bound():
    texts = ["the quick brown fox jumps over the lazy dog", "a lazy dog sleeps", "the fox runs"] * 3
    tokenizer = train_xlm_roberta_tokenizer(texts, vocab_size=40)
    assert len(tokenizer) <= 40
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]


def test_accepts_a_generator():
    tokenizer = train_xlm_roberta_tokenizer((f"caption number {i}" for i in range(20)), vocab_size=50)
    assert tokenizer.decode(tokenizer("caption number 7")["input_ids"], skip_special_tokens=True) == "caption number 7"


def test_invalid_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_xlm_roberta_tokenizer(["a b c"], vocab_size=5)
    with pytest.raises(ValueError, match="empty corpus"):
        train_xlm_roberta_tokenizer([], vocab_size=50)
