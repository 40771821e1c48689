"""Data of the "multilingual shapes" demo: concepts, captions in five languages, rendered images and splits.

Everything is generated here, without downloads (spec: `docs/demo_spec.md`). A concept is one of
4 shapes x 6 colours x 2 sizes x 4 positions = 192 combinations. Images are small (64x64) pictures of one shape;
captions describe the concept in English, German, French, Spanish or Chinese with a few paraphrases each.

The demo pre-trains on English image captions plus EN<->XX parallel sentences and then evaluates zero-shot XX
text->image retrieval on a gallery with one image per concept. A caption names all four attributes, so retrieval at
rank 1 needs every attribute right.

All split builders are deterministic functions of their seed, and every split draws from its own random stream, so
the same seed never gives the test gallery the jitter of a training image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw


__all__ = [
    "COLOURS",
    "COLOUR_RGB",
    "LANGUAGES",
    "NUM_CONCEPTS",
    "POSITIONS",
    "ROTATION_DEGREES",
    "SHAPES",
    "SIZES",
    "VOCABULARY",
    "Concept",
    "ImageCaptionData",
    "ParallelPair",
    "TestGallery",
    "all_concepts",
    "caption",
    "paraphrases",
    "parallel_sentences",
    "pretraining_pairs",
    "render",
    "render_array",
    "test_gallery",
    "tokenizer_corpus",
]

# =====================================================================================================================
# Concepts and vocabulary
# =====================================================================================================================

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
NUM_CONCEPTS = len(SHAPES) * len(COLOURS) * len(SIZES) * len(POSITIONS)

# The spec's vocabulary table: language -> attribute value (English key) -> dictionary form of the word or phrase.
# Adjectives are given in their base (masculine / uninflected) form; `paraphrases` inflects them.
VOCABULARY: dict[str, dict[str, str]] = {
    "en": {
        "circle": "circle", "square": "square", "triangle": "triangle", "cross": "cross",
        "red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "purple": "purple", "orange": "orange",
        "small": "small", "large": "large",
        "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    },
    "de": {
        "circle": "Kreis", "square": "Quadrat", "triangle": "Dreieck", "cross": "Kreuz",
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
        "red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "purple": "morado", "orange": "naranja",
        "small": "pequeño", "large": "grande",
        "left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo",
    },
    "zh": {
        "circle": "圆形", "square": "正方形", "triangle": "三角形", "cross": "十字",
        "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色",
        "small": "小", "large": "大",
        "left": "在左边", "right": "在右边", "top": "在上面", "bottom": "在下面",
    },
}  # fmt: skip

# Grammatical gender of the nouns: "m", "f" or "n". English and Chinese do not inflect.
_NOUN_GENDER: dict[str, dict[str, str]] = {
    "de": {"circle": "m", "square": "n", "triangle": "n", "cross": "n"},
    "fr": {"circle": "m", "square": "m", "triangle": "m", "cross": "f"},
    "es": {"circle": "m", "square": "m", "triangle": "m", "cross": "f"},
}

# German colour adjectives that stay uninflected in standard usage ("ein lila Kreis"; "lilaner" and "oranger" are
# colloquial). They are treated as invariable consistently, in every case and gender.
_DE_INVARIABLE = frozenset({"lila", "orange"})
# Feminine forms of French and Spanish adjectives; adjectives missing here are invariable in gender
# (fr: rouge, jaune, orange; es: verde, azul, naranja, grande).
_FR_FEMININE = {"petit": "petite", "grand": "grande", "vert": "verte", "bleu": "bleue", "violet": "violette"}
_ES_FEMININE = {"pequeño": "pequeña", "rojo": "roja", "amarillo": "amarilla", "morado": "morada"}


@dataclass(frozen=True, order=True)
class Concept:
    """One of the 192 things the demo can show and describe; every field holds an English key (see `VOCABULARY`)."""

    shape: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for value, allowed in (
            (self.shape, SHAPES),
            (self.colour, COLOURS),
            (self.size, SIZES),
            (self.position, POSITIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")

    @property
    def index(self) -> int:
        """Position of this concept in `all_concepts()`: the id used for labels and retrieval ground truth."""
        return _CONCEPT_INDEX[self]


def all_concepts() -> tuple[Concept, ...]:
    """The 192 concepts in a fixed order: shape-major, then colour, size and position (the order of the gallery)."""
    return _ALL_CONCEPTS


_ALL_CONCEPTS: tuple[Concept, ...] = tuple(
    Concept(shape, colour, size, position)
    for shape, colour, size, position in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS)
)
_CONCEPT_INDEX: dict[Concept, int] = {concept: index for index, concept in enumerate(_ALL_CONCEPTS)}


# =====================================================================================================================
# Captions
# =====================================================================================================================


def _english(concept: Concept) -> tuple[str, ...]:
    words = VOCABULARY["en"]
    noun_phrase = f"a {words[concept.size]} {words[concept.colour]} {words[concept.shape]}"
    position = words[concept.position]
    return (
        f"{noun_phrase} {position}",
        f"there is {noun_phrase} {position}",
        f"{position} there is {noun_phrase}",
        f"the image shows {noun_phrase} {position}",
    )


def _german_noun_phrase(concept: Concept, case: str) -> str:
    # Mixed declension after the indefinite article. Only masculine and neuter nouns occur here:
    #   nominative: ein kleiner roter Kreis  / ein kleines rotes Quadrat
    #   accusative: einen kleinen roten Kreis / ein kleines rotes Quadrat
    words = VOCABULARY["de"]
    gender = _NOUN_GENDER["de"][concept.shape]
    if gender == "m":
        article, ending = ("ein", "er") if case == "nominative" else ("einen", "en")
    else:
        article, ending = "ein", "es"

    def inflect(adjective: str) -> str:
        return adjective if adjective in _DE_INVARIABLE else adjective + ending

    return f"{article} {inflect(words[concept.size])} {inflect(words[concept.colour])} {words[concept.shape]}"


def _german(concept: Concept) -> tuple[str, ...]:
    nominative = _german_noun_phrase(concept, "nominative")
    accusative = _german_noun_phrase(concept, "accusative")
    position = VOCABULARY["de"][concept.position]
    return (
        f"{nominative} {position}",
        f"{position} ist {nominative}",
        f"{nominative} befindet sich {position}",
        f"das Bild zeigt {accusative} {position}",
    )


def _french(concept: Concept) -> tuple[str, ...]:
    # Size adjectives (petit, grand) precede the noun, colour adjectives follow it: "une petite croix verte".
    words = VOCABULARY["fr"]
    feminine = _NOUN_GENDER["fr"][concept.shape] == "f"

    def agree(adjective: str) -> str:
        return _FR_FEMININE.get(adjective, adjective) if feminine else adjective

    article = "une" if feminine else "un"
    noun_phrase = f"{article} {agree(words[concept.size])} {words[concept.shape]} {agree(words[concept.colour])}"
    position = words[concept.position]
    # No punctuation or elision ("l'image"): captions are cleaned by `pre_caption`, which turns both into spaces.
    return (
        f"{noun_phrase} {position}",
        f"il y a {noun_phrase} {position}",
        f"{position} il y a {noun_phrase}",
        f"on voit {noun_phrase} {position}",
    )


def _spanish(concept: Concept) -> tuple[str, ...]:
    # Noun, then colour, then size, as in the spec: "una cruz roja pequeña".
    words = VOCABULARY["es"]
    feminine = _NOUN_GENDER["es"][concept.shape] == "f"

    def agree(adjective: str) -> str:
        return _ES_FEMININE.get(adjective, adjective) if feminine else adjective

    article = "una" if feminine else "un"
    noun_phrase = f"{article} {words[concept.shape]} {agree(words[concept.colour])} {agree(words[concept.size])}"
    position = words[concept.position]
    return (
        f"{noun_phrase} {position}",
        f"hay {noun_phrase} {position}",
        f"{position} hay {noun_phrase}",
        f"se ve {noun_phrase} {position}",
    )


def _chinese(concept: Concept) -> tuple[str, ...]:
    words = VOCABULARY["zh"]
    noun_phrase = f"一个{words[concept.size]}的{words[concept.colour]}{words[concept.shape]}"
    position = words[concept.position]
    return (
        f"{position}的{noun_phrase}",  # 在左边的一个小的红色圆形
        f"{position}有{noun_phrase}",  # 在左边有一个小的红色圆形
        f"{noun_phrase}{position}",  # 一个小的红色圆形在左边
    )


_PARAPHRASE_BUILDERS = {"en": _english, "de": _german, "fr": _french, "es": _spanish, "zh": _chinese}


@cache
def paraphrases(concept: Concept, language: str) -> tuple[str, ...]:
    """All caption paraphrases of `concept` in `language`, in template order (cached: captions are built once).

    Captions start in lower case and carry no punctuation, like the spec's examples; German nouns keep their capital.
    """
    if language not in _PARAPHRASE_BUILDERS:
        raise ValueError(f"Unknown language {language!r}; expected one of {LANGUAGES}")
    return _PARAPHRASE_BUILDERS[language](concept)


def caption(concept: Concept, language: str, rng: np.random.Generator) -> str:
    """A caption of `concept` in `language`, one of `paraphrases(concept, language)` chosen uniformly by `rng`."""
    options = paraphrases(concept, language)
    return options[int(rng.integers(len(options)))]


# =====================================================================================================================
# Images
# =====================================================================================================================

# Base colours, chosen far apart in RGB so that they stay distinguishable under the shade jitter below: purple is
# much redder and darker than blue, orange sits between red and yellow with ~75 levels of green to either side.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 205, 25),
    "purple": (135, 50, 175),
    "orange": (240, 130, 20),
}
# Shade jitter: each channel moves by up to +-_SHADE_CHANNEL_JITTER and all three together by up to
# +-_SHADE_BRIGHTNESS_JITTER. The worst case (22 levels on one channel) stays well below half the smallest gap
# between two base colours.
_SHADE_CHANNEL_JITTER = 12
_SHADE_BRIGHTNESS_JITTER = 10

# Centre of each position's region as a fraction of the image side (x, y): "left" is the left half, vertically
# centred; "top" is the top half, horizontally centred; and so on.
_REGION_CENTRE: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
}
_POSITION_JITTER = 0.05  # +- fraction of the image side, per axis

# Square, triangle and cross are drawn turned by a random angle in [-ROTATION_DEGREES / 2, ROTATION_DEGREES / 2]
# (a circle has none to show). Not a full turn: under any rotation a square or cross is told from a circle, and a
# cross from a triangle, only by how its edge directions relate to each other, which the demo's tiny Swin does not
# learn in the demo's budget: given the shape label itself, it picks the right one of the four in 46% of held-out
# images after 600 steps with full turns and in 88% with +-20 degrees (`benchmarks/vision_attribute_probe.py`). With
# full turns both retrieval rankings stop at a coin flip between the two shapes of equal area (R@1 about 0.5), and
# whether re-ranking helps is decided by chance.
ROTATION_DEGREES = 40.0

# Nominal extent of a shape (a circle's diameter) as a fraction of the image side. The ranges are far apart: a
# large shape has at least (0.34 / 0.22)^2 = 2.4 times the area of a small one of the same kind, and more than any
# small shape of any kind (see the per-shape factors below).
_EXTENT_RANGE: dict[str, tuple[float, float]] = {"small": (0.17, 0.22), "large": (0.34, 0.40)}

# Shape geometry relative to the nominal extent s; factors are chosen so that all shapes cover a similar area
# (circle 0.79 s^2, square 0.81 s^2, triangle 0.57 s^2, cross 0.59 s^2), so that size reads as area for every shape.
_SQUARE_HALF_SIDE = 0.45
_TRIANGLE_CIRCUMRADIUS = 1.15 / math.sqrt(3.0)  # equilateral triangle of side 1.15 s
_CROSS_HALF_LENGTH = 0.5
_CROSS_HALF_THICKNESS = 0.18
# Radius of the circle around each shape's centre that contains it at any rotation, in units of s; used to keep the
# whole shape inside the image.
_BOUNDING_RADIUS: dict[str, float] = {
    "circle": 0.5,
    "square": _SQUARE_HALF_SIDE * math.sqrt(2.0),
    "triangle": _TRIANGLE_CIRCUMRADIUS,
    "cross": math.hypot(_CROSS_HALF_LENGTH, _CROSS_HALF_THICKNESS),
}

# Light background: a grey level in this range, tinted per channel by up to +-_BACKGROUND_TINT.
_BACKGROUND_RANGE = (209, 234)
_BACKGROUND_TINT = 6
# Per-pixel noise lies in [-_NOISE_HALF_RANGE, _NOISE_HALF_RANGE]. Every drawn colour is kept within
# [_NOISE_HALF_RANGE, 255 - _NOISE_HALF_RANGE] (background: at most 234 + 6 = 240), so adding noise never overflows
# and the noisy image needs no clipping: this keeps the per-pixel work in cheap `uint8` arithmetic.
_NOISE_HALF_RANGE = 15


def _local_polygon(shape: str, extent: float) -> np.ndarray:
    """Vertices `[K, 2]` of a square, triangle or cross of nominal extent `extent`, centred at 0 and unrotated."""
    if shape == "square":
        h = _SQUARE_HALF_SIDE * extent
        return np.array([(-h, -h), (h, -h), (h, h), (-h, h)])
    if shape == "triangle":
        # Pointing up (image y grows downwards); its centroid is the centre, so rotation does not move it.
        angles = -math.pi / 2 + np.arange(3) * (2 * math.pi / 3)
        return _TRIANGLE_CIRCUMRADIUS * extent * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "cross":
        a, t = _CROSS_HALF_LENGTH * extent, _CROSS_HALF_THICKNESS * extent
        return np.array(
            [
                (t, a),
                (t, t),
                (a, t),
                (a, -t),
                (t, -t),
                (t, -a),
                (-t, -a),
                (-t, -t),
                (-a, -t),
                (-a, t),
                (-t, t),
                (-t, a),
            ]
        )
    raise ValueError(f"{shape!r} is not a polygon shape")


def render_array(
    concept: Concept, rng: np.random.Generator, image_size: int = 64, rotation_degrees: float = ROTATION_DEGREES
) -> np.ndarray:
    """Draw `concept` with fresh random jitter and return it as a `uint8` array `[image_size, image_size, 3]`.

    Jitter: position (+-5% of the side per axis), extent within the size class, rotation within
    +-`rotation_degrees / 2` (square, triangle and cross; 360 for any angle), colour shade, background tint and
    per-pixel noise. The shape always lies entirely inside the image; its centre is moved inwards when the jittered
    position would cut it off.

    The random draws happen in a fixed order and number, so the picture is a deterministic function of `rng`'s state.
    """
    if not 0.0 <= rotation_degrees <= 360.0:
        raise ValueError(f"rotation_degrees must be in [0, 360], got {rotation_degrees}")
    side = float(image_size)
    # All continuous jitter in one call (fewer Python-level calls: this function runs ~10^4 times per data set).
    u_extent, u_x, u_y, u_angle = rng.random(4).tolist()
    channel_jitter = rng.integers(-_SHADE_CHANNEL_JITTER, _SHADE_CHANNEL_JITTER + 1, size=3)
    brightness_jitter, background_level = rng.integers(
        (-_SHADE_BRIGHTNESS_JITTER, _BACKGROUND_RANGE[0]), (_SHADE_BRIGHTNESS_JITTER + 1, _BACKGROUND_RANGE[1] + 1)
    )
    background_tint = rng.integers(-_BACKGROUND_TINT, _BACKGROUND_TINT + 1, size=3)
    noise_bytes = np.frombuffer(rng.bytes(image_size * image_size * 3), dtype=np.uint8)

    low, high = _EXTENT_RANGE[concept.size]
    extent = (low + (high - low) * u_extent) * side
    radius = _BOUNDING_RADIUS[concept.shape] * extent
    centre_x, centre_y = _REGION_CENTRE[concept.position]
    x = (centre_x + _POSITION_JITTER * (2.0 * u_x - 1.0)) * side
    y = (centre_y + _POSITION_JITTER * (2.0 * u_y - 1.0)) * side
    # Keep one pixel of margin around the shape; "side - 1" is the centre of the last pixel.
    x = min(max(x, radius + 1.0), side - 2.0 - radius)
    y = min(max(y, radius + 1.0), side - 2.0 - radius)

    shade = np.asarray(COLOUR_RGB[concept.colour]) + channel_jitter + brightness_jitter
    shade = np.clip(shade, _NOISE_HALF_RANGE, 255 - _NOISE_HALF_RANGE)
    background = background_level + background_tint
    # Colours are drawn lowered by the noise half-range and the non-negative noise below is added afterwards: the
    # result is colour + noise in [-15, 15] without leaving uint8.
    image = Image.new("RGB", (image_size, image_size), tuple((background - _NOISE_HALF_RANGE).tolist()))
    fill = tuple((shade - _NOISE_HALF_RANGE).tolist())
    draw = ImageDraw.Draw(image)
    if concept.shape == "circle":
        r = extent / 2.0
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    else:
        angle = math.radians(rotation_degrees) * (u_angle - 0.5)
        cos, sin = math.cos(angle), math.sin(angle)
        rotated = _local_polygon(concept.shape, extent) @ np.array([[cos, sin], [-sin, cos]])
        draw.polygon([(x + dx, y + dy) for dx, dy in rotated.tolist()], fill=fill)

    # Mild noise from raw random bytes (much faster than `rng.normal`): the sum of a byte's two 4-bit halves is
    # triangular on [0, 30], i.e. [-15, 15] around the drawn colour, with a standard deviation of about 6.5 levels.
    noise = (noise_bytes & 15) + (noise_bytes >> 4)
    pixels = np.asarray(image, dtype=np.uint8).reshape(-1)
    return (pixels + noise).reshape(image_size, image_size, 3)


def render(
    concept: Concept, rng: np.random.Generator, image_size: int = 64, rotation_degrees: float = ROTATION_DEGREES
) -> Image.Image:
    """Draw `concept` with fresh random jitter as an RGB `PIL.Image` of `image_size` x `image_size` pixels.

    Same picture as `render_array` for the same `rng` state; see there for the jitter.
    """
    return Image.fromarray(render_array(concept, rng, image_size, rotation_degrees), mode="RGB")


# =====================================================================================================================
# Splits
# =====================================================================================================================

# Each split draws from its own stream, `SeedSequence([seed, tag])`, so that splits built with the same seed share no
# random numbers (e.g. the gallery does not replay the first training images).
_SPLIT_TAGS = {"pretraining": 1, "parallel": 2, "gallery": 3, "tokenizer": 4, "caption-translations": 5}


def _split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_TAGS[split]])


def _balanced_concept_ids(count: int, rng: np.random.Generator) -> np.ndarray:
    # Concatenated random permutations of all concepts: the order is random, but every concept occurs
    # floor(count / 192) or that plus one times, so small training sets still cover every concept.
    repeats = -(-count // NUM_CONCEPTS)
    ids = np.concatenate([rng.permutation(NUM_CONCEPTS) for _ in range(repeats)]) if repeats else np.empty(0, int)
    return ids[:count].astype(np.int64)


@dataclass(frozen=True)
class ImageCaptionData:
    """Images with one caption each.

    Attributes:
        images: `uint8` array `[N, H, W, 3]`.
        captions: `N` captions; `captions[i]` describes `images[i]`.
        concept_ids: `int64` array `[N]`; `all_concepts()[concept_ids[i]]` is what image `i` shows.
    """

    images: np.ndarray
    captions: list[str]
    concept_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True)
class ParallelPair:
    """An English caption and a caption of the same concept in another language (text only)."""

    english: str
    translation: str
    language: str
    concept_id: int


@dataclass(frozen=True)
class TestGallery:
    """The evaluation split: one image per concept and one query caption per concept and language.

    Attributes:
        images: `uint8` array `[192, H, W, 3]` in `all_concepts()` order.
        concept_ids: `int64` array `[192]`, equal to `arange(192)`: image `i` shows concept `i`.
        queries: language -> 192 captions; `queries[lang][i]` describes image `i`. Includes English.
    """

    images: np.ndarray
    concept_ids: np.ndarray
    queries: dict[str, list[str]]


def pretraining_pairs(
    num_images: int, seed: int, image_size: int = 64, rotation_degrees: float = ROTATION_DEGREES
) -> ImageCaptionData:
    """English image-caption pairs for pre-training, each image drawn with fresh jitter.

    Concepts come in random order but balanced (every concept `num_images // 192` or one more times); captions are
    random English paraphrases. 10,000 images of 64x64 take about 120 MB and a few seconds.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    rng = _split_rng(seed, "pretraining")
    concept_ids = _balanced_concept_ids(num_images, rng)
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    captions: list[str] = []
    for i, concept_id in enumerate(concept_ids.tolist()):
        concept = _ALL_CONCEPTS[concept_id]
        images[i] = render_array(concept, rng, image_size, rotation_degrees)
        captions.append(caption(concept, "en", rng))
    return ImageCaptionData(images=images, captions=captions, concept_ids=concept_ids)


def parallel_sentences(
    num_pairs: int, seed: int, languages: Sequence[str] = ("de", "fr", "es", "zh")
) -> list[ParallelPair]:
    """EN<->XX caption pairs of the same concept, for translation-pair (TTC/TLM) training.

    Concepts are balanced as in `pretraining_pairs`; the target language of each pair is drawn uniformly from
    `languages`, and both sides use independently chosen paraphrases (so the model cannot match templates).
    """
    if num_pairs < 0:
        raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
    unknown = [language for language in languages if language not in LANGUAGES or language == "en"]
    if unknown or not languages:
        raise ValueError(f"languages must be a non-empty subset of {LANGUAGES[1:]}, got {tuple(languages)}")
    rng = _split_rng(seed, "parallel")
    concept_ids = _balanced_concept_ids(num_pairs, rng)
    pairs = []
    for concept_id in concept_ids.tolist():
        concept = _ALL_CONCEPTS[concept_id]
        language = languages[int(rng.integers(len(languages)))]
        english = caption(concept, "en", rng)
        pairs.append(ParallelPair(english, caption(concept, language, rng), language, concept_id))
    return pairs


def image_caption_records(data: ImageCaptionData, languages: Sequence[str] = ("en",), seed: int = 0) -> list[dict]:
    """The pairs as records of the original image-caption layout, `{"image": PIL image, "caption": {"en": ...}}`,
    plus `"concept"`: the concept id (images of one concept are near-duplicates; see the streams' `id_key`).

    `languages` other than English add a caption of the same concept in each of them (random paraphrases, a
    deterministic function of `seed`); the stream then picks one language per sample, as the original's data with
    translated captions does. The demo itself pairs images with English only."""
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown or "en" not in languages:
        raise ValueError(f"languages must include 'en' and be among {LANGUAGES}, got {list(languages)}")
    rng = _split_rng(seed, "caption-translations")
    records = []
    for pixels, english, concept_id in zip(data.images, data.captions, data.concept_ids.tolist(), strict=True):
        concept = _ALL_CONCEPTS[concept_id]
        captions = {
            language: english if language == "en" else caption(concept, language, rng) for language in languages
        }
        records.append({"image": Image.fromarray(pixels), "caption": captions, "concept": concept_id})
    return records


def parallel_text_records(pairs: Sequence[ParallelPair]) -> list[dict]:
    """The pairs as records of the original parallel-text layout, `{"source_text": English, "target_text": ...}`,
    plus `"concept"`: the concept id both sentences describe."""
    return [
        {"source_text": pair.english, "target_text": pair.translation, "concept": pair.concept_id} for pair in pairs
    ]


def test_gallery(
    seed: int,
    image_size: int = 64,
    languages: Sequence[str] = LANGUAGES,
    rotation_degrees: float = ROTATION_DEGREES,
) -> TestGallery:
    """One newly drawn image per concept (192, in `all_concepts()` order) and one query per concept and language."""
    rng = _split_rng(seed, "gallery")
    images = np.stack([render_array(concept, rng, image_size, rotation_degrees) for concept in _ALL_CONCEPTS])
    queries = {language: [caption(concept, language, rng) for concept in _ALL_CONCEPTS] for language in languages}
    return TestGallery(images=images, concept_ids=np.arange(NUM_CONCEPTS, dtype=np.int64), queries=queries)


# Not a pytest test despite its name (pytest would otherwise try to collect it when it is imported into a test file).
test_gallery.__test__ = False  # type: ignore[attr-defined]


def tokenizer_corpus(seed: int, include_lowercase: bool = True) -> list[str]:
    """Texts for training the demo tokenizer: every paraphrase of every concept in every language, shuffled.

    The corpus is exhaustive (192 concepts x 3-4 templates x 5 languages, about 3,700 sentences), so every word the
    demo can produce is in it; `seed` only fixes the order. With `include_lowercase`, lower-cased copies of captions
    that contain capitals (German nouns) are added too, so that text cleaned by `pre_caption` stays in-vocabulary.
    """
    texts = [text for language in LANGUAGES for concept in _ALL_CONCEPTS for text in paraphrases(concept, language)]
    if include_lowercase:
        texts += [text.lower() for text in texts if text.lower() != text]
    order = _split_rng(seed, "tokenizer").permutation(len(texts))
    return [texts[i] for i in order.tolist()]
