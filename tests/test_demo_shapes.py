"""The data generator of the "multilingual shapes" demo: concepts, captions, rendered images and splits.

Captions are checked against a word-stem table written out here (independently of the module's vocabulary), and
images by pixel analysis: the pixels that differ strongly from the background must sit in the concept's region, cover
an area that matches its size class and have a mean colour closest to its colour.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cclm_hf.demo.shapes import (
    COLOUR_RGB,
    COLOURS,
    LANGUAGES,
    NUM_CONCEPTS,
    POSITIONS,
    SHAPES,
    SIZES,
    Concept,
    all_concepts,
    caption,
    image_caption_records,
    parallel_sentences,
    paraphrases,
    pretraining_pairs,
    render,
    render_array,
    test_gallery,
    tokenizer_corpus,
)


# =====================================================================================================================
# Captions
# =====================================================================================================================

# Stems that every inflected form contains (es "roj": rojo, roja; de "klein": kleiner, kleines, kleinen).
# Entries with a space are matched as whole phrases; Chinese is matched as a substring.
STEMS: dict[str, dict[str, str]] = {
    "en": {
        "circle": "circle", "square": "square", "triangle": "triangle", "cross": "cross",
        "red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "purple": "purple", "orange": "orange",
        "small": "small", "large": "large",
        "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    },
    "de": {
        "circle": "kreis", "square": "quadrat", "triangle": "dreieck", "cross": "kreuz",
        "red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "lila", "orange": "orange",
        "small": "klein", "large": "groß",
        "left": "links", "right": "rechts", "top": "oben", "bottom": "unten",
    },
    "fr": {
        "circle": "cercle", "square": "carré", "triangle": "triangle", "cross": "croix",
        "red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet", "orange": "orange",
        "small": "petit", "large": "grand",
        "left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas",
    },
    "es": {
        "circle": "círculo", "square": "cuadrado", "triangle": "triángulo", "cross": "cruz",
        "red": "roj", "green": "verde", "blue": "azul", "yellow": "amarill", "purple": "morad", "orange": "naranja",
        "small": "pequeñ", "large": "grande",
        "left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo",
    },
    "zh": {
        "circle": "圆形", "square": "正方形", "triangle": "三角形", "cross": "十字",
        "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色",
        "small": "小", "large": "大",
        "left": "在左边", "right": "在右边", "top": "在上面", "bottom": "在下面",
    },
}  # fmt: skip
ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}


def mentions(text: str, language: str, value: str) -> bool:
    stem = STEMS[language][value]
    if language == "zh":
        return stem in text
    lowered = text.lower()
    if " " in stem:
        return f" {stem} " in f" {lowered} "
    return any(word.startswith(stem) for word in lowered.split())


def assert_describes(text: str, language: str, concept: Concept) -> None:
    """`text` names each attribute of `concept` and no other value of that attribute."""
    for attribute, values in ATTRIBUTES.items():
        named = [value for value in values if mentions(text, language, value)]
        assert named == [getattr(concept, attribute)], (text, language, concept, attribute, named)


def test_there_are_192_unique_concepts_in_a_fixed_order():
    concepts = all_concepts()
    assert len(concepts) == NUM_CONCEPTS == 192
    assert len(set(concepts)) == 192
    assert concepts == all_concepts()
    assert {(c.shape, c.colour, c.size, c.position) for c in concepts} == {
        (s, c, z, p) for s in SHAPES for c in COLOURS for z in SIZES for p in POSITIONS
    }
    assert [concept.index for concept in concepts] == list(range(192))
    with pytest.raises(ValueError):
        Concept("hexagon", "red", "small", "left")


def test_every_paraphrase_names_exactly_the_attributes_of_its_concept():
    for language in LANGUAGES:
        for concept in all_concepts():
            options = paraphrases(concept, language)
            assert len(options) >= 3 and len(set(options)) == len(options)
            for text in options:
                assert_describes(text, language, concept)


def test_paraphrases_tell_all_concepts_apart():
    # A caption must identify its concept: no two concepts share a caption, in any language.
    for language in LANGUAGES:
        owners = Counter(text for concept in all_concepts() for text in paraphrases(concept, language))
        assert max(owners.values()) == 1, language


@pytest.mark.parametrize(
    "concept, language, expected",
    [
        (Concept("circle", "red", "small", "left"), "en", "a small red circle on the left"),
        (Concept("circle", "red", "small", "left"), "en", "there is a small red circle on the left"),
        (Concept("circle", "red", "small", "left"), "de", "ein kleiner roter Kreis links"),
        (Concept("circle", "red", "small", "left"), "de", "das Bild zeigt einen kleinen roten Kreis links"),
        (Concept("square", "green", "large", "top"), "de", "ein großes grünes Quadrat oben"),
        (Concept("square", "green", "large", "top"), "de", "das Bild zeigt ein großes grünes Quadrat oben"),
        (Concept("triangle", "purple", "small", "bottom"), "de", "ein kleines lila Dreieck unten"),
        (Concept("cross", "orange", "large", "right"), "de", "ein großes orange Kreuz rechts"),
        (Concept("circle", "red", "small", "left"), "fr", "un petit cercle rouge à gauche"),
        (Concept("cross", "purple", "small", "left"), "fr", "une petite croix violette à gauche"),
        (Concept("cross", "blue", "large", "bottom"), "fr", "une grande croix bleue en bas"),
        (Concept("circle", "green", "large", "top"), "fr", "un grand cercle vert en haut"),
        (Concept("square", "orange", "small", "right"), "fr", "un petit carré orange à droite"),
        (Concept("circle", "red", "small", "left"), "es", "un círculo rojo pequeño a la izquierda"),
        (Concept("cross", "red", "small", "left"), "es", "una cruz roja pequeña a la izquierda"),
        (Concept("cross", "yellow", "large", "top"), "es", "una cruz amarilla grande arriba"),
        (Concept("triangle", "orange", "small", "bottom"), "es", "un triángulo naranja pequeño abajo"),
        (Concept("circle", "red", "small", "left"), "zh", "在左边的一个小的红色圆形"),
        (Concept("square", "blue", "large", "right"), "zh", "在右边有一个大的蓝色正方形"),
    ],
)
def test_known_captions_are_among_the_paraphrases(concept, language, expected):
    assert expected in paraphrases(concept, language)


FEMININE_ONLY = {
    "fr": {"une", "petite", "grande", "verte", "bleue", "violette"},
    "es": {"una", "pequeña", "roja", "amarilla", "morada"},
}
MASCULINE_ONLY = {
    "fr": {"un", "petit", "grand", "vert", "bleu", "violet"},
    "es": {"un", "pequeño", "rojo", "amarillo", "morado"},
}


@pytest.mark.parametrize("language", ["fr", "es"])
def test_french_and_spanish_articles_and_adjectives_agree_with_the_noun(language):
    for concept in all_concepts():
        feminine = concept.shape == "cross"  # la croix, la cruz; the other nouns are masculine
        forbidden = MASCULINE_ONLY[language] if feminine else FEMININE_ONLY[language]
        for text in paraphrases(concept, language):
            assert not forbidden & set(text.split()), text


def test_german_adjective_endings_follow_gender_and_case():
    for concept in all_concepts():
        masculine = concept.shape == "circle"  # der Kreis; das Quadrat, das Dreieck, das Kreuz
        for text in paraphrases(concept, "de"):
            words = text.split()
            size_at = next(i for i, word in enumerate(words) if word.startswith(STEMS["de"][concept.size]))
            article, size_word, colour_word = words[size_at - 1 : size_at + 2]
            if masculine:
                ending = {"ein": "er", "einen": "en"}[article]  # nominative / accusative
            else:
                assert article == "ein", text
                ending = "es"
            assert size_word == STEMS["de"][concept.size] + ending, text
            # lila and orange stay uninflected in standard German.
            uninflected = concept.colour in ("purple", "orange")
            assert colour_word == STEMS["de"][concept.colour] + ("" if uninflected else ending), text


def test_caption_draws_every_paraphrase_deterministically():
    concept = Concept("triangle", "yellow", "large", "bottom")
    for language in LANGUAGES:
        drawn = [caption(concept, language, np.random.default_rng(seed)) for seed in range(60)]
        assert set(drawn) == set(paraphrases(concept, language))
        assert drawn == [caption(concept, language, np.random.default_rng(seed)) for seed in range(60)]
    with pytest.raises(ValueError):
        caption(concept, "it", np.random.default_rng(0))


# =====================================================================================================================
# Images
# =====================================================================================================================


def shape_pixels(image: np.ndarray) -> tuple[float, float, int, np.ndarray]:
    """(centroid x, centroid y, area, mean RGB) of the pixels that differ strongly from the background.

    The background is the per-channel median (a shape never covers half of the image); its noise stays within 15-30
    levels of it, while every shape colour differs by well over 100 levels in some channel.
    """
    background = np.median(image.reshape(-1, 3), axis=0)
    mask = np.abs(image.astype(np.int16) - background).max(axis=-1) > 60
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), int(mask.sum()), image[mask].mean(axis=0)


def in_region(x: float, y: float, position: str, image_size: int) -> bool:
    """Left/right: that side's outer 40% and vertically near the centre; top/bottom likewise."""
    near, far = 0.4 * image_size, 0.6 * image_size
    centred = lambda value: 0.35 * image_size < value < 0.65 * image_size  # noqa: E731
    return {
        "left": x < near and centred(y),
        "right": x > far and centred(y),
        "top": y < near and centred(x),
        "bottom": y > far and centred(x),
    }[position]


def nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOUR_RGB, key=lambda name: float(np.sum((np.asarray(COLOUR_RGB[name]) - rgb) ** 2)))


def assert_shows(image: np.ndarray, concept: Concept) -> int:
    """Position and colour of `image` match `concept`; returns the shape's area."""
    x, y, area, colour = shape_pixels(image)
    assert in_region(x, y, concept.position, image.shape[0]), (concept, x, y)
    assert nearest_colour(colour) == concept.colour, (concept, colour)
    return area


@pytest.mark.parametrize("image_size, rounds", [(64, 3), (96, 1)])
def test_rendered_shapes_have_the_concepts_position_colour_and_size(image_size, rounds):
    rng = np.random.default_rng(0)
    areas: dict[tuple[str, str], list[int]] = {}
    for _ in range(rounds):
        for concept in all_concepts():
            image = render_array(concept, rng, image_size)
            assert image.shape == (image_size, image_size, 3) and image.dtype == np.uint8
            areas.setdefault((concept.shape, concept.size), []).append(assert_shows(image, concept))
    for shape in SHAPES:
        # Size classes do not overlap at all, whatever the jitter, and differ by more than 2x in area.
        assert max(areas[shape, "small"]) < min(areas[shape, "large"]), shape
        assert np.mean(areas[shape, "large"]) > 2 * np.mean(areas[shape, "small"]), shape
    # Across shapes too: any large shape is bigger than any small one.
    small = [a for (_, size), values in areas.items() if size == "small" for a in values]
    large = [a for (_, size), values in areas.items() if size == "large" for a in values]
    assert max(small) < min(large)


def test_background_is_light_and_noisy():
    image = render_array(Concept("circle", "blue", "small", "left"), np.random.default_rng(0))
    corner = image[:12, -12:].astype(np.float64)  # far from a small shape on the left
    assert corner.mean() > 190
    assert 2.0 < corner.std(axis=(0, 1)).mean() < 12.0


def _shape_mask(image: np.ndarray) -> np.ndarray:
    background = np.median(image.reshape(-1, 3), axis=0)
    return np.abs(image.astype(np.int16) - background).max(axis=-1) > 60


def fill_ratio(image: np.ndarray) -> float:
    """Shape area over the area of its axis-aligned bounding box: 1 for an upright square, 0.5 at 45 degrees."""
    mask = _shape_mask(image)
    ys, xs = np.nonzero(mask)
    return mask.sum() / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))


def centroid_below_box_centre(image: np.ndarray) -> float:
    """Pixels by which the shape's centroid lies below the centre of its bounding box: h / 6 (about 3.5 px for a
    large shape) for an upright triangle (apex up), negative for one turned by more than 90 degrees."""
    ys, _ = np.nonzero(_shape_mask(image))
    return ys.mean() - (ys.min() + ys.max()) / 2


@pytest.mark.parametrize("rotation_degrees", [0.0, 40.0, 360.0])
def test_squares_and_triangles_turn_within_the_rotation_range(rotation_degrees):
    rng = np.random.default_rng(1)
    square, triangle = Concept("square", "red", "large", "top"), Concept("triangle", "red", "large", "top")
    squares = [fill_ratio(render_array(square, rng, rotation_degrees=rotation_degrees)) for _ in range(40)]
    triangles = [
        centroid_below_box_centre(render_array(triangle, rng, rotation_degrees=rotation_degrees)) for _ in range(40)
    ]
    if rotation_degrees == 0.0:
        assert min(squares) > 0.97 and min(triangles) > 3.0  # upright
    elif rotation_degrees == 40.0:
        # +-20 degrees leaves at least 1 / (cos 20 + sin 20)^2 = 0.605 of the bounding box filled (less rounding)
        assert min(squares) > 0.58 and max(squares) - min(squares) > 0.2  # turned, but never far
        assert min(triangles) > 0.5  # every triangle still points up
    else:
        assert min(squares) < 0.55 and sum(offset < 0 for offset in triangles) >= 5  # any angle, upside down too


def test_circles_are_round_and_the_rotation_range_is_checked():
    rng = np.random.default_rng(1)
    circles = [fill_ratio(render_array(Concept("circle", "red", "large", "top"), rng)) for _ in range(20)]
    assert all(abs(ratio - np.pi / 4) < 0.08 for ratio in circles)
    with pytest.raises(ValueError, match="rotation_degrees must be in \\[0, 360\\], got 400"):
        render_array(Concept("square", "red", "large", "top"), rng, rotation_degrees=400)


def test_render_returns_the_same_picture_as_render_array():
    concept = Concept("cross", "green", "large", "right")
    image = render(concept, np.random.default_rng(5))
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(image), render_array(concept, np.random.default_rng(5)))
    assert not np.array_equal(np.asarray(image), render_array(concept, np.random.default_rng(6)))


# =====================================================================================================================
# Splits
# =====================================================================================================================


def test_pretraining_pairs_are_english_balanced_and_match_their_images():
    data = pretraining_pairs(400, seed=0)
    assert data.images.shape == (400, 64, 64, 3) and data.images.dtype == np.uint8
    assert len(data) == len(data.captions) == 400 and data.concept_ids.shape == (400,)
    # Balanced: every concept twice or three times in 400 = 2 * 192 + 16.
    assert set(Counter(data.concept_ids.tolist()).values()) == {2, 3}
    concepts = all_concepts()
    for image, text, concept_id in zip(data.images, data.captions, data.concept_ids.tolist(), strict=True):
        concept = concepts[concept_id]
        assert text in paraphrases(concept, "en")
        assert_shows(image, concept)
    assert len(set(data.captions)) > 200  # random paraphrases, not one template


def test_image_caption_records_are_english_unless_more_languages_are_asked_for():
    data = pretraining_pairs(24, seed=0)
    english = image_caption_records(data)
    assert [record["caption"] for record in english] == [{"en": text} for text in data.captions]
    assert [record["concept"] for record in english] == data.concept_ids.tolist()
    several = image_caption_records(data, ("en", "de", "zh"), seed=3)
    for record, text, concept_id in zip(several, data.captions, data.concept_ids.tolist(), strict=True):
        concept = all_concepts()[concept_id]
        assert set(record["caption"]) == {"en", "de", "zh"} and record["caption"]["en"] == text
        assert record["caption"]["de"] in paraphrases(concept, "de")
        assert record["caption"]["zh"] in paraphrases(concept, "zh")
    again = image_caption_records(data, ("en", "de", "zh"), seed=3)
    assert [record["caption"] for record in again] == [record["caption"] for record in several]
    with pytest.raises(ValueError, match="'xx'"):
        image_caption_records(data, ("en", "xx"))
    with pytest.raises(ValueError, match="must include 'en'"):
        image_caption_records(data, ("de",))


def test_pretraining_pairs_are_deterministic_per_seed():
    first, again, other = pretraining_pairs(50, seed=0), pretraining_pairs(50, seed=0), pretraining_pairs(50, seed=1)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.captions == again.captions
    np.testing.assert_array_equal(first.concept_ids, again.concept_ids)
    assert not np.array_equal(first.concept_ids, other.concept_ids)
    assert not np.array_equal(first.images, other.images)
    assert pretraining_pairs(0, seed=0).images.shape == (0, 64, 64, 3)


def test_parallel_sentences_pair_captions_of_the_same_concept():
    pairs = parallel_sentences(400, seed=0)
    assert len(pairs) == 400
    assert {pair.language for pair in pairs} == {"de", "fr", "es", "zh"}
    concepts = all_concepts()
    for pair in pairs:
        concept = concepts[pair.concept_id]
        assert pair.english in paraphrases(concept, "en")
        assert pair.translation in paraphrases(concept, pair.language)
        assert_describes(pair.english, "en", concept)
        assert_describes(pair.translation, pair.language, concept)
    assert set(Counter(pair.concept_id for pair in pairs).values()) == {2, 3}

    assert {pair.language for pair in parallel_sentences(50, seed=0, languages=("zh",))} == {"zh"}
    with pytest.raises(ValueError):
        parallel_sentences(10, seed=0, languages=("en",))


def test_parallel_sentences_are_deterministic_per_seed():
    assert parallel_sentences(100, seed=3) == parallel_sentences(100, seed=3)
    assert parallel_sentences(100, seed=3) != parallel_sentences(100, seed=4)


def test_test_gallery_has_one_image_and_one_query_per_concept_and_language():
    gallery = test_gallery(seed=0)
    assert gallery.images.shape == (192, 64, 64, 3) and gallery.images.dtype == np.uint8
    np.testing.assert_array_equal(gallery.concept_ids, np.arange(192))
    assert tuple(gallery.queries) == LANGUAGES
    for language, queries in gallery.queries.items():
        assert len(queries) == 192
        for query, concept in zip(queries, all_concepts(), strict=True):
            assert_describes(query, language, concept)
    for image, concept in zip(gallery.images, all_concepts(), strict=True):
        assert_shows(image, concept)


def test_test_gallery_is_deterministic_and_independent_of_the_training_images():
    first, again, other = test_gallery(seed=0), test_gallery(seed=0), test_gallery(seed=1)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.queries == again.queries
    assert not np.array_equal(first.images, other.images)
    assert first.queries != other.queries
    # Same seed, other split: the gallery does not replay the training stream.
    training = pretraining_pairs(192, seed=0)
    assert not any(np.array_equal(first.images[i], image) for i, image in enumerate(training.images))


def test_tokenizer_corpus_covers_every_caption_and_trains_a_tokenizer_without_unknowns():
    corpus = tokenizer_corpus(seed=0)
    assert corpus == tokenizer_corpus(seed=0)
    assert corpus != tokenizer_corpus(seed=1) and sorted(corpus) == sorted(tokenizer_corpus(seed=1))
    assert len(set(corpus)) == len(corpus)
    texts = set(corpus)
    for language in LANGUAGES:
        for concept in all_concepts():
            assert texts.issuperset(paraphrases(concept, language))
    assert "ein kleiner roter kreis links" in texts  # lower-cased German, as `pre_caption` leaves it

    from cclm_hf.tokenizer_training import train_xlm_roberta_tokenizer

    tokenizer = train_xlm_roberta_tokenizer(corpus, vocab_size=500)
    gallery_queries = [query for queries in test_gallery(seed=0).queries.values() for query in queries]
    for input_ids in tokenizer(gallery_queries)["input_ids"]:
        assert tokenizer.unk_token_id not in input_ids
