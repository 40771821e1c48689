"""`CCLMIndex` (build, save/load/add, resume, bad input), two-stage search against brute force, CLI and pipelines."""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from model_factories import tiny_config
from PIL import Image
from safetensors import safe_open
from transformers import pipeline

import cclm_hf.search.index as index_module
from cclm_hf import CCLMForImageTextRetrieval, CCLMImageProcessor, CCLMModel, CCLMProcessor
from cclm_hf.cli import main
from cclm_hf.data.images import BadSampleError
from cclm_hf.pipelines import CCLMZeroShotImageClassificationPipeline, ImageTextRetrievalPipeline
from cclm_hf.search import CCLMIndex


QUERIES = ["a dog runs across the park", "ein Hund läuft über den Park", "一只狗在公园里奔跑"]
NUM_IMAGES = 7


def make_model(tokenizer, seed: int = 0) -> CCLMForImageTextRetrieval:
    config = tiny_config(text_config={**tiny_config().text_config.to_dict(), "vocab_size": len(tokenizer)})
    torch.manual_seed(seed)
    model = CCLMForImageTextRetrieval(config).eval()
    with torch.no_grad():  # spread the random head's logits, so that rankings by them have no near-ties
        model.itm_head.dense_out.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return make_model(tiny_tokenizer)


@pytest.fixture(scope="module")
def processor(tiny_tokenizer):
    return CCLMProcessor(CCLMImageProcessor(size={"height": 32, "width": 32}), tiny_tokenizer)


@pytest.fixture
def images_dir(tmp_path, natural_image):
    folder = tmp_path / "photos"
    (folder / "beach").mkdir(parents=True)
    for number in range(NUM_IMAGES):
        subfolder = folder / "beach" if number % 3 == 0 else folder
        natural_image(40 + number, 50, seed=number).save(subfolder / f"image{number}.png")
    (folder / "notes.txt").write_text("not an image, not part of the gallery")
    return folder


def gallery_files(folder):
    return sorted(path for path in folder.rglob("*.png"))


# ---------------------------------------------------------------------------------------------------------------------
# brute force: every (query, item) pair through the model's own forward
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def brute_force_scores(model, processor, texts, images):
    """`(cosine [T, I], itm [T, I])` from `model.forward` on each single pair."""
    cosine = torch.empty(len(texts), len(images))
    itm = torch.empty(len(texts), len(images))
    for t, text in enumerate(texts):
        text_inputs = processor(text=[text], truncation=True, max_length=40, return_tensors="pt")
        for i, image in enumerate(images):
            pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"]
            output = model(text_inputs["input_ids"], pixel_values, text_inputs["attention_mask"], use_itm_head=True)
            cosine[t, i] = output.text_embeds[0] @ output.image_embeds[0]
            itm[t, i] = output.itm_logits[0, 1]
    return cosine, itm


def brute_force_ranking(cosine, itm, rule, k, rerank_k):
    """Per query: `[(item, score)]` of the top `k` under `rule`, re-ranking the top `rerank_k` by cosine."""
    ranking = []
    for row in range(len(cosine)):
        by_cosine = sorted(range(cosine.shape[1]), key=lambda item: -cosine[row, item])
        if rule is None:
            scored = [(item, float(cosine[row, item])) for item in by_cosine]
        else:
            candidates = by_cosine[:rerank_k]
            extra = {"itm": 0.0, "itm+itc": 1.0}[rule]
            scored = [(item, float(itm[row, item] + extra * cosine[row, item])) for item in candidates]
            scored.sort(key=lambda pair: -pair[1])
        ranking.append(scored[:k])
    return ranking


def assert_hits_match(hits_per_query, expected, ids):
    for hits, reference in zip(hits_per_query, expected, strict=True):
        assert [hit.id for hit in hits] == [ids[item] for item, _ in reference]
        torch.testing.assert_close(
            torch.tensor([hit.score for hit in hits]),
            torch.tensor([score for _, score in reference]),
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("rule", [None, "itm", "itm+itc"])
def test_text_search_matches_brute_force_ranking(model, processor, images_dir, rule):
    index = CCLMIndex.from_folder(model, processor, images_dir)
    assert index.ids == [path.relative_to(images_dir).as_posix() for path in gallery_files(images_dir)]
    images = [Image.open(path) for path in gallery_files(images_dir)]
    cosine, itm = brute_force_scores(model, processor, QUERIES, images)
    results = index.search(QUERIES, k=3, rerank=rule, rerank_k=5, chunk_size=4)
    assert_hits_match(results, brute_force_ranking(cosine, itm, rule, k=3, rerank_k=5), index.ids)
    for hits, row in zip(results, cosine, strict=True):  # `similarity` is always the stage-1 cosine
        torch.testing.assert_close(torch.tensor([hit.similarity for hit in hits]), row[[hit.row for hit in hits]])


def test_image_queries_over_a_caption_index_match_brute_force(model, processor, multilingual_captions, natural_image):
    captions = multilingual_captions["en"][:4] + multilingual_captions["de"][:4] + multilingual_captions["zh"][:3]
    index = CCLMIndex.from_texts(model, processor, captions, ids=[f"c{n}" for n in range(len(captions))])
    queries = [natural_image(48, 48, seed=10), natural_image(30, 60, seed=11)]
    results = index.search(queries, k=4, rerank="itm", rerank_k=6, chunk_size=5)

    # stored captions are padded to text_max_length; the brute force tokenises each caption alone
    cosine, itm = brute_force_scores(model, processor, captions, queries)
    expected = brute_force_ranking(cosine.t(), itm.t(), "itm", k=4, rerank_k=6)
    assert_hits_match(results, expected, index.ids)
    assert [hit.text for hit in results[0]] == [captions[hit.row] for hit in results[0]]


def test_faiss_and_torch_nearest_neighbours_agree(model, processor, images_dir):
    index = CCLMIndex.from_folder(model, processor, images_dir)
    for rule in (None, "itm"):
        by_torch = index.search(QUERIES, k=5, rerank=rule, rerank_k=6, backend="torch")
        by_faiss = index.search(QUERIES, k=5, rerank=rule, rerank_k=6, backend="faiss")
        for torch_hits, faiss_hits in zip(by_torch, by_faiss, strict=True):
            assert [hit.id for hit in torch_hits] == [hit.id for hit in faiss_hits]
            torch.testing.assert_close(
                torch.tensor([hit.score for hit in torch_hits]), torch.tensor([hit.score for hit in faiss_hits])
            )


# ---------------------------------------------------------------------------------------------------------------------
# storage: save / load / add, dtypes, resume
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_load_add_round_trip(model, processor, images_dir, tmp_path, dtype):
    files = gallery_files(images_dir)
    index = CCLMIndex.from_images(model, processor, files[:4], dtype=dtype)
    index.save(tmp_path / "saved")
    loaded = CCLMIndex.load(tmp_path / "saved", model, processor)
    assert loaded.ids == index.ids == [str(path) for path in files[:4]]
    assert loaded.embeds.dtype == dtype
    torch.testing.assert_close(loaded.embeds, index.embeds, atol=0, rtol=0)

    report = loaded.add(files[4:])  # written into tmp_path / "saved" at once
    assert report.added == NUM_IMAGES - 4
    with pytest.raises(ValueError, match="already in the index"):
        loaded.add(files[:1])
    reloaded = CCLMIndex.load(tmp_path / "saved", model, processor)
    whole = CCLMIndex.from_images(model, processor, files, dtype=dtype)
    assert reloaded.ids == whole.ids
    torch.testing.assert_close(reloaded.embeds, whole.embeds, atol=0, rtol=0)
    rows = torch.tensor([6, 0, 5])
    store = reloaded.rerank_store("tokens")
    torch.testing.assert_close(store[rows], whole.rerank_store("tokens")[rows], atol=0, rtol=0)
    assert store[rows].dtype == dtype
    for rule in (None, "itm+itc"):
        assert reloaded.search(QUERIES, k=4, rerank=rule) == whole.search(QUERIES, k=4, rerank=rule)

    shards = sorted((tmp_path / "saved").glob("shard-*.safetensors"))
    assert len(shards) == 2  # one per save / add
    with safe_open(str(shards[1]), framework="pt") as shard:  # plain safetensors files
        torch.testing.assert_close(shard.get_tensor("embeds"), whole.embeds[4:], atol=0, rtol=0)
        assert json.loads(shard.metadata()["ids"]) == whole.ids[4:]
    manifest = json.loads((tmp_path / "saved" / "index.json").read_text())
    assert manifest["settings"]["dtype"] == str(dtype).removeprefix("torch.")


def test_resume_after_an_interrupted_build(model, processor, images_dir, tmp_path, monkeypatch):
    uninterrupted = CCLMIndex.from_folder(model, processor, images_dir)
    loaded_ids = []
    real_load_image = index_module.load_image

    def interrupted_load_image(value, source):
        if len(loaded_ids) == 5:
            raise KeyboardInterrupt
        loaded_ids.append(source)
        return real_load_image(value, source=source)

    monkeypatch.setattr(index_module, "load_image", interrupted_load_image)
    with pytest.raises(KeyboardInterrupt):
        CCLMIndex.from_folder(model, processor, images_dir, tmp_path / "index", batch_size=2, shard_size=2)
    assert len(list((tmp_path / "index").glob("shard-*.safetensors"))) == 2  # images 0-3; image 4 was lost
    (tmp_path / "index" / "shard-00002.safetensors.tmp").write_bytes(b"half a shard")  # killed while writing

    def counting_load_image(value, source):
        loaded_ids.append(source)
        return real_load_image(value, source=source)

    loaded_ids.clear()
    monkeypatch.setattr(index_module, "load_image", counting_load_image)
    resumed = CCLMIndex.from_folder(model, processor, images_dir, tmp_path / "index", batch_size=2, shard_size=2)
    assert loaded_ids == uninterrupted.ids[4:]  # only what was not stored yet
    assert resumed.ids == uninterrupted.ids
    torch.testing.assert_close(resumed.embeds, uninterrupted.embeds)
    assert CCLMIndex.load(tmp_path / "index", model, processor).ids == uninterrupted.ids


def test_resuming_with_other_settings_is_refused(model, processor, images_dir, tmp_path):
    CCLMIndex.from_folder(model, processor, images_dir, tmp_path / "index", dtype="float16")
    with pytest.raises(ValueError, match="dtype='float16'"):
        CCLMIndex.from_folder(model, processor, images_dir, tmp_path / "index", dtype="float32")
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    with pytest.raises(ValueError, match="use another index directory"):
        CCLMIndex.from_folder(model, processor, other_folder, tmp_path / "index")


def test_dataset_image_column(model, processor, images_dir):
    files = gallery_files(images_dir)
    dataset = datasets.Dataset.from_dict(
        {"image": [str(path) for path in files[:3]], "name": ["first", "second", "third"]}
    ).cast_column("image", datasets.Image())
    index = CCLMIndex.from_dataset(model, processor, dataset, id_column="name")
    reference = CCLMIndex.from_images(model, processor, [Image.open(path) for path in files[:3]])
    assert index.ids == ["first", "second", "third"]
    torch.testing.assert_close(index.embeds, reference.embeds)


# ---------------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_unreadable_image_is_named_and_skipped_or_raised(model, processor, images_dir, caplog):
    (images_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(BadSampleError, match="broken.jpg"):
        CCLMIndex.from_folder(model, processor, images_dir)

    index = CCLMIndex.create(model, processor)
    with caplog.at_level("WARNING"):
        report = index.add_folder(images_dir, on_error="skip")
    assert report.added == NUM_IMAGES and len(index) == NUM_IMAGES
    assert [image_id for image_id, _ in report.skipped] == ["broken.jpg"]
    assert "broken.jpg" in report.skipped[0][1] or "not a recognised image" in report.skipped[0][1]
    assert "skipped 1 unreadable image" in caplog.text and "broken.jpg" in caplog.text
    assert "broken.jpg" not in index.ids and "notes.txt" not in index.ids


def test_index_built_with_another_model_is_refused(model, processor, images_dir, tmp_path, tiny_tokenizer):
    CCLMIndex.from_folder(model, processor, images_dir, tmp_path / "index")
    other = make_model(tiny_tokenizer, seed=1)
    with pytest.raises(ValueError, match="was built with model .* cannot be searched with model"):
        CCLMIndex.load(tmp_path / "index", other, processor)
    # the same weights in another dtype are the same model
    CCLMIndex.load(tmp_path / "index", make_model(tiny_tokenizer, seed=0).to(torch.bfloat16), processor)


def test_empty_queries_large_k_and_bad_arguments(model, processor, images_dir, caplog):
    index = CCLMIndex.from_folder(model, processor, images_dir, store_rerank_states=False)
    assert index.search([]) == []
    with caplog.at_level("WARNING"):
        hits = index.search("ein Hund", k=50)
    assert "larger than the gallery" in caplog.text
    assert len(hits) == 1 and len(hits[0]) == NUM_IMAGES
    assert sorted(hit.id for hit in hits[0]) == sorted(index.ids)
    scores = [hit.score for hit in hits[0]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="built without the image tokens"):
        index.search("ein Hund", rerank="itm")
    with pytest.raises(ValueError, match="rerank_k"):
        index.search("ein Hund", k=5, rerank="itm", rerank_k=2)
    with pytest.raises(ValueError, match="rerank must be"):
        index.search("ein Hund", rerank="bm25")
    with pytest.raises(ValueError, match="empty"):
        CCLMIndex.create(model, processor).search("ein Hund")
    with pytest.raises(ValueError, match="training mode"):
        CCLMIndex.create(CCLMModel(model.config).train(), processor)


# ---------------------------------------------------------------------------------------------------------------------
# command line and pipelines
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model, processor):
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_command_line_build_and_search(model, processor, model_dir, images_dir, tmp_path, capsys):
    (images_dir / "broken.png").write_bytes(b"nope")
    index_dir = tmp_path / "index"
    assert (
        main(["index", "build", str(images_dir), str(index_dir), "--model", str(model_dir), "--on-error", "skip"]) == 0
    )
    output = capsys.readouterr().out
    assert "skipped broken.png" in output and f"{NUM_IMAGES} images ({NUM_IMAGES} added" in output

    html_file = tmp_path / "results.html"
    arguments = ["search", str(index_dir), *QUERIES[:2], "--k", "2", "--rerank", "itm", "--rerank-k", "4"]
    assert main([*arguments, "--json", "--html", str(html_file)]) == 0
    records = json.loads(capsys.readouterr().out)
    expected = CCLMIndex.from_folder(model, processor, images_dir, on_error="skip").search(
        QUERIES[:2], k=2, rerank="itm", rerank_k=4
    )
    assert [record["query"] for record in records] == QUERIES[:2]
    for record, hits in zip(records, expected, strict=True):
        assert [(hit["rank"], hit["id"]) for hit in record["hits"]] == [(1, hits[0].id), (2, hits[1].id)]
        assert record["hits"][0]["score"] == pytest.approx(hits[0].score, abs=1e-5)
    page = html_file.read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 4 and QUERIES[1] in page

    assert main(arguments) == 0  # the table
    table = capsys.readouterr().out
    assert f"query: {QUERIES[0]}" in table and expected[0][0].id in table


def test_a_folder_without_the_matching_head_loads_without_it(model, processor, images_dir, tmp_path):
    from cclm_hf.search.loading import load_model_and_processor

    model.cclm.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    loaded, _ = load_model_and_processor(tmp_path / "base", device="cpu")
    assert type(loaded) is CCLMModel  # not a retrieval model with a random matching head
    index = CCLMIndex.from_folder(loaded, processor, images_dir)
    assert index.search("ein Hund", k=2) == CCLMIndex.from_folder(model, processor, images_dir).search("ein Hund", k=2)
    with pytest.raises(ValueError, match="needs a model with the matching head"):
        index.search("ein Hund", rerank="itm")


def test_image_text_retrieval_pipeline(model, processor, model_dir, images_dir, multilingual_captions):
    retriever = pipeline("image-text-retrieval", model=str(model_dir))
    assert isinstance(retriever, ImageTextRetrievalPipeline)
    files = gallery_files(images_dir)
    result = retriever(QUERIES, images=files, top_k=2, rerank="itm")
    expected = CCLMIndex.from_images(model, processor, files).search(QUERIES, k=2, rerank="itm")
    assert [[entry["id"] for entry in entries] for entries in result] == [[h.id for h in hits] for hits in expected]
    assert result[0][0]["score"] == pytest.approx(expected[0][0].score, abs=1e-5)

    captions = multilingual_captions["fr"][:5]
    by_image = retriever(str(files[0]), texts=captions, top_k=3)
    assert len(by_image) == 3 and {entry["text"] for entry in by_image} <= set(captions)


def test_zero_shot_classification_with_itm_reranking(model, processor, model_dir, natural_image):
    classifier = pipeline(
        "zero-shot-image-classification", model=str(model_dir), pipeline_class=CCLMZeroShotImageClassificationPipeline
    )
    image = natural_image(40, 50)
    labels = ["dog", "cat", "boat", "bicycle", "mountain"]
    plain = classifier(image, candidate_labels=labels)
    reranked = classifier(image, candidate_labels=labels, itm_top_k=3)

    template = "This is a photo of {}."
    cosine, itm = brute_force_scores(model, processor, [template.format(label) for label in labels], [image])
    top3 = cosine[:, 0].topk(3).indices.tolist()
    expected_order = sorted(top3, key=lambda label: -itm[label, 0])
    assert [entry["label"] for entry in reranked[:3]] == [labels[label] for label in expected_order]
    assert [entry["label"] for entry in reranked[3:]] == [entry["label"] for entry in plain[3:]]
    torch.testing.assert_close(
        torch.tensor([entry["itm_score"] for entry in reranked[:3]]), itm[expected_order, 0], atol=1e-5, rtol=0
    )
    plain_scores = {entry["label"]: entry["score"] for entry in plain}
    assert {entry["label"]: entry["score"] for entry in reranked} == pytest.approx(plain_scores, abs=1e-6)
    assert "itm_score" not in reranked[3]
