"""Training-time image transforms of the original CCLM code base, re-implemented on PIL / NumPy / torch.

Sources: CCLM `dataset/randaugment.py` (RandAugment on uint8 HWC arrays with OpenCV), `dataset/__init__.py` (the
torchvision compositions) and `dataset/pretrain_dataset_multilingual.py` (`RegionMultiTextDataset`: the region crop,
the box bookkeeping and the patch mask of region batches).

What is kept exactly:

- RandAugment: `num_ops` operations drawn uniformly **with replacement**, each applied independently with probability
  0.5, magnitude 7 of 10 (enhance factor 1.36, shear 0.21, translation 7 px, rotation 21 degrees, each geometric
  magnitude with a random sign), grey fill (128, 128, 128), and the same order of random draws (ops first, then per op:
  "apply?", then the sign). The geometric ops use OpenCV's `warpAffine` geometry (forward matrix, pixel centres at
  integer coordinates, rotation about `(W/2, H/2)`, positive angle = counter-clockwise), translated into Pillow's
  inverse-mapping convention, with bilinear interpolation like `cv2.INTER_LINEAR`.
- Brightness is the original lookup table `uint8(clip(v * factor))` (truncation); AutoContrast / Equalize are Pillow's
  `ImageOps` functions, which the original re-implemented bit for bit; Sharpness is the original formula (3x3 smoothing
  kernel `[[1,1,1],[1,5,1],[1,1,1]] / 13`, blend on the interior, border pixels unchanged).
- The compositions of `create_dataset` (pre-training, fine-tuning, evaluation) and the region sample construction.

Deliberate deviations (see each docstring): Sharpness clips before the uint8 cast (the original casts negative / >255
floats to uint8 directly, which wraps around); bilinear interpolation is Pillow's float version instead of OpenCV's
fixed-point one (pixel values may differ by one grey level, and at image borders Pillow fills where OpenCV blends with
the fill colour); the chosen region box is clipped to the image instead of rejecting the record; randomness comes from
an explicit `torch.Generator` / `random.Random` or torch's global RNG instead of NumPy's global RNG.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import PIL.Image
import torch
from PIL import ImageOps
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from .images import BadSampleError


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "LEFT_RIGHT_KEYWORDS",
    "RANDAUGMENT_OPS",
    "REGION_RANDAUGMENT_OPS",
    "RandAugment",
    "RegionSample",
    "auto_contrast",
    "brightness",
    "caption_mentions_left_or_right",
    "equalize",
    "eval_transform",
    "finetune_train_transform",
    "identity",
    "pretraining_image_transform",
    "region_crop",
    "region_image_transform",
    "region_patch_mask",
    "region_rand_augment",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

RANDAUGMENT_OPS: tuple[str, ...] = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
)
# Region batches only use photometric ops: a geometric op would move the objects away from their target boxes.
REGION_RANDAUGMENT_OPS: tuple[str, ...] = ("Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness")

Fill = tuple[int, int, int]
RandomSource = torch.Generator | random.Random | None


# =====================================================================================================================
# Random numbers
# =====================================================================================================================


class _Rng:
    """Uniform view over the random sources accepted by this module.

    - `torch.Generator`: draws with `torch.rand` / `torch.randint` on that generator;
    - `random.Random`: draws with its `random()` / `randint()`;
    - `None`: torch's global RNG, like torchvision's own random transforms, so that one `torch.manual_seed` (or the
      per-worker seeding of `torch.utils.data.DataLoader`) makes a whole pipeline reproducible.
    """

    __slots__ = ("_source",)

    def __init__(self, source: RandomSource) -> None:
        if source is not None and not isinstance(source, (torch.Generator, random.Random)):
            raise TypeError(
                f"expected a torch.Generator, a random.Random or None as random source, got {type(source).__name__}"
            )
        self._source = source

    def random(self) -> float:
        """A float in [0, 1)."""
        if isinstance(self._source, random.Random):
            return self._source.random()
        return float(torch.rand((), generator=self._source, dtype=torch.float64))

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high], both ends included (like `random.randint`)."""
        if isinstance(self._source, random.Random):
            return self._source.randint(low, high)
        return int(torch.randint(low, high + 1, (), generator=self._source))


# =====================================================================================================================
# Single operations (PIL RGB in, PIL RGB out)
# =====================================================================================================================


def identity(image: PIL.Image.Image) -> PIL.Image.Image:
    """Return the image unchanged (kept as an op so that RandAugment sometimes does nothing on purpose)."""
    return image


def auto_contrast(image: PIL.Image.Image) -> PIL.Image.Image:
    """Stretch each channel to [0, 255] (`PIL.ImageOps.autocontrast`, which the original reproduced with NumPy)."""
    return ImageOps.autocontrast(image)


def equalize(image: PIL.Image.Image) -> PIL.Image.Image:
    """Per-channel histogram equalisation (`PIL.ImageOps.equalize`, which the original reproduced with NumPy)."""
    return ImageOps.equalize(image)


def brightness(image: PIL.Image.Image, factor: float) -> PIL.Image.Image:
    """Scale all values by `factor` with the original's lookup table `uint8(clip(v * factor, 0, 255))` (truncation)."""
    table = (np.arange(256, dtype=np.float32) * np.float32(factor)).clip(0, 255).astype(np.uint8)
    return image.point(table.tolist() * len(image.getbands()))


def sharpness(image: PIL.Image.Image, factor: float) -> PIL.Image.Image:
    """Blend the image with its 3x3-smoothed version: `smooth + factor * (image - smooth)` on the interior.

    Same kernel as the original (and as `PIL.ImageFilter.SMOOTH`): `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`, with the
    smoothed image rounded to uint8 (as `cv2.filter2D` does) and the blend truncated to uint8; the one-pixel border is
    left unchanged. Deviation: the blend is clipped to [0, 255] before the cast, the original's direct float -> uint8
    cast wraps out-of-range values around (a factor > 1 overshoots at edges).
    """
    if factor == 1.0 or min(image.size) < 3:
        return image
    array = np.asarray(image, dtype=np.float32)
    interior = array[1:-1, 1:-1]
    neighbours = sum(
        array[1 + dy : array.shape[0] - 1 + dy, 1 + dx : array.shape[1] - 1 + dx]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    smooth = np.rint((neighbours + 4.0 * interior) / 13.0)
    out = array.copy()
    out[1:-1, 1:-1] = smooth + np.float32(factor) * (interior - smooth)
    return PIL.Image.fromarray(out.clip(0, 255).astype(np.uint8), mode=image.mode)


def _warp_affine(image: PIL.Image.Image, matrix: np.ndarray, fill: Fill) -> PIL.Image.Image:
    """Apply an OpenCV-style forward affine `matrix` (2x3, dst = A @ src + b, pixel centres at integer coordinates).

    Pillow's `Image.transform` wants the inverse map in its own coordinates, where pixel `i` spans [i, i + 1]
    (centre at i + 0.5): src_pil = A^-1 @ (dst_pil - 0.5 - b) + 0.5.
    """
    linear, shift = matrix[:, :2].astype(np.float64), matrix[:, 2].astype(np.float64)
    inverse = np.linalg.inv(linear)
    offset = 0.5 - inverse @ (shift + 0.5)
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    return image.transform(
        image.size, PIL.Image.Transform.AFFINE, data, resample=PIL.Image.Resampling.BILINEAR, fillcolor=fill
    )


def rotate(image: PIL.Image.Image, degrees: float, fill: Fill = (128, 128, 128)) -> PIL.Image.Image:
    """Rotate by `degrees` counter-clockwise about `(W/2, H/2)` (`cv2.getRotationMatrix2D` + `cv2.warpAffine`)."""
    width, height = image.size
    center_x, center_y = width / 2, height / 2
    alpha, beta = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    matrix = np.array(
        [
            [alpha, beta, (1 - alpha) * center_x - beta * center_y],
            [-beta, alpha, beta * center_x + (1 - alpha) * center_y],
        ]
    )
    return _warp_affine(image, matrix, fill)


def shear_x(image: PIL.Image.Image, factor: float, fill: Fill = (128, 128, 128)) -> PIL.Image.Image:
    """Horizontal shear about the top-left pixel: the content of row `y` moves by `factor * y` pixels to the right."""
    return _warp_affine(image, np.array([[1.0, factor, 0.0], [0.0, 1.0, 0.0]]), fill)


def shear_y(image: PIL.Image.Image, factor: float, fill: Fill = (128, 128, 128)) -> PIL.Image.Image:
    """Vertical shear about the top-left pixel: the content of column `x` moves by `factor * x` pixels down."""
    return _warp_affine(image, np.array([[1.0, 0.0, 0.0], [factor, 1.0, 0.0]]), fill)


def translate_x(image: PIL.Image.Image, offset: float, fill: Fill = (128, 128, 128)) -> PIL.Image.Image:
    """Move the content `offset` pixels to the **left** (the original's matrix `[[1, 0, -offset], [0, 1, 0]]`)."""
    return _warp_affine(image, np.array([[1.0, 0.0, -offset], [0.0, 1.0, 0.0]]), fill)


def translate_y(image: PIL.Image.Image, offset: float, fill: Fill = (128, 128, 128)) -> PIL.Image.Image:
    """Move the content `offset` pixels **up** (the original's matrix `[[1, 0, 0], [0, 1, -offset]]`)."""
    return _warp_affine(image, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -offset]]), fill)


# =====================================================================================================================
# RandAugment
# =====================================================================================================================

_GEOMETRIC_OPS: Mapping[str, Callable[[PIL.Image.Image, float, Fill], PIL.Image.Image]] = {
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Rotate": rotate,
}


class RandAugment:
    r"""RandAugment as used by CCLM (`dataset/randaugment.py: RandomAugment(2, 7, isPIL=True, augs=[...])`).

    For every image, `num_ops` operation names are drawn uniformly **with replacement** from `ops`; each drawn op is
    then applied (in draw order) with probability `prob`. Magnitudes are fixed by `magnitude / max_magnitude`:

    | op | argument at magnitude 7 |
    |---|---|
    | Brightness, Sharpness | factor `0.1 + 1.8 * 7/10 = 1.36` (always > 1: brighter / sharper, never darker) |
    | ShearX, ShearY | `+-0.3 * 7/10 = +-0.21`, random sign |
    | TranslateX, TranslateY | `+-translate_const * 7/10 = +-7` pixels, random sign |
    | Rotate | `+-30 * 7/10 = +-21` degrees, random sign |
    | Identity, AutoContrast, Equalize | none |

    Geometric ops fill uncovered pixels with `fill` (grey 128). Random numbers come from the `generator` passed to
    `__call__`, else from the one given to the constructor, else from torch's global RNG (so that the DataLoader's
    per-worker seeding applies, as it does to torchvision's transforms). Both `torch.Generator` and `random.Random`
    are accepted. Do not give the constructor a generator in a multi-worker `DataLoader`: every worker would receive
    a copy in the same state and repeat the other workers' augmentations.

    Args:
        num_ops (`int`, defaults to 2): Number of ops drawn per image (the original's `N`).
        magnitude (`float`, defaults to 7): Strength of every op (the original's `M`), out of `max_magnitude`.
        ops (`Sequence[str]`, defaults to [`RANDAUGMENT_OPS`]): Op names to draw from; [`REGION_RANDAUGMENT_OPS`] for
            region batches.
        max_magnitude (`float`, defaults to 10): The original's `MAX_LEVEL`.
        prob (`float`, defaults to 0.5): Probability that a drawn op is applied.
        translate_const (`float`, defaults to 10): Translation in pixels at `magnitude == max_magnitude`.
        fill (`tuple[int, int, int]`, defaults to `(128, 128, 128)`): Fill colour of geometric ops.
        generator (`torch.Generator` or `random.Random`, *optional*): Default random source.

    Example:

    ```python
    >>> augment = RandAugment(generator=torch.Generator().manual_seed(0))
    >>> augmented = augment(image)  # PIL RGB in, PIL RGB out
    ```
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 7,
        ops: Sequence[str] = RANDAUGMENT_OPS,
        *,
        max_magnitude: float = 10,
        prob: float = 0.5,
        translate_const: float = 10.0,
        fill: Fill = (128, 128, 128),
        generator: RandomSource = None,
    ) -> None:
        ops = tuple(ops)
        unknown = [name for name in ops if name not in RANDAUGMENT_OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; available: {list(RANDAUGMENT_OPS)}")
        if not ops:
            raise ValueError("RandAugment needs at least one op")
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        _Rng(generator)  # validate the type early
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.ops = ops
        self.max_magnitude = max_magnitude
        self.prob = prob
        self.translate_const = translate_const
        self.fill = tuple(int(v) for v in fill)
        self.generator = generator

    @property
    def level(self) -> float:
        """`magnitude / max_magnitude`, the fraction of each op's maximal strength."""
        return self.magnitude / self.max_magnitude

    def _argument(self, name: str, rng: _Rng) -> float | None:
        level = self.level
        if name in ("Brightness", "Sharpness"):
            return level * 1.8 + 0.1
        if name in ("ShearX", "ShearY"):
            value = level * 0.3
            return -value if rng.random() > 0.5 else value
        if name in ("TranslateX", "TranslateY"):
            value = level * float(self.translate_const)
            return -value if rng.random() > 0.5 else value
        if name == "Rotate":
            value = level * 30.0
            return -value if rng.random() < 0.5 else value
        return None

    def sample(self, generator: RandomSource = None) -> list[tuple[str, float | None]]:
        """Draw the ops for one image: the list of `(name, argument)` that will be applied, in order.

        The draws happen in the original's order: all op names first, then for each op "apply?" and, when applied and
        geometric, the sign of its magnitude.
        """
        rng = _Rng(generator if generator is not None else self.generator)
        names = [self.ops[rng.randint(0, len(self.ops) - 1)] for _ in range(self.num_ops)]
        applied = []
        for name in names:
            if rng.random() > self.prob:
                continue
            applied.append((name, self._argument(name, rng)))
        return applied

    def apply(self, image: PIL.Image.Image, name: str, argument: float | None = None) -> PIL.Image.Image:
        """Apply the op `name` with `argument` (as returned by [`~RandAugment.sample`]) to an RGB image."""
        if name == "Identity":
            return identity(image)
        if name == "AutoContrast":
            return auto_contrast(image)
        if name == "Equalize":
            return equalize(image)
        if name == "Brightness":
            return brightness(image, argument)
        if name == "Sharpness":
            return sharpness(image, argument)
        if name in _GEOMETRIC_OPS:
            return _GEOMETRIC_OPS[name](image, argument, self.fill)
        raise ValueError(f"unknown RandAugment op {name!r}")

    def __call__(self, image: PIL.Image.Image, generator: RandomSource = None) -> PIL.Image.Image:
        """Augment one PIL image (converted to RGB first if needed) and return a PIL RGB image."""
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(
                f"RandAugment expects a PIL image (apply it before ToTensor, as CCLM does), got {type(image).__name__}"
            )
        if image.mode != "RGB":
            image = image.convert("RGB")
        for name, argument in self.sample(generator):
            image = self.apply(image, name, argument)
        return image

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, ops={list(self.ops)}, "
            f"prob={self.prob}, fill={self.fill})"
        )


def region_rand_augment(num_ops: int = 2, magnitude: float = 7, **kwargs) -> RandAugment:
    """The RandAugment of region batches (the original's `box_transform`): photometric ops only, boxes stay valid."""
    return RandAugment(num_ops, magnitude, REGION_RANDAUGMENT_OPS, **kwargs)


# =====================================================================================================================
# Compositions of the original `create_dataset`
# =====================================================================================================================


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    return [T.ToTensor(), T.Normalize(mean, std)]


def pretraining_image_transform(
    image_size: int = 224, *, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> T.Compose:
    """Image transform of the image-text pre-training batches (the original's `pretrain_transform`).

    RandomResizedCrop(scale (0.2, 1.0), bicubic) -> RandomHorizontalFlip (no caption check: the original flips
    "a dog on the left" too) -> RandAugment(2, 7) -> ToTensor -> Normalize(CLIP mean / std).
    """
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            RandAugment(2, 7),
            *_to_normalized_tensor(mean, std),
        ]
    )


def finetune_train_transform(
    image_size: int,
    *,
    horizontal_flip: bool = True,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> T.Compose:
    """Image transform of fine-tuning training sets (the original's `train_transform`).

    RandomResizedCrop(scale (0.5, 1.0), bicubic) -> RandomHorizontalFlip -> RandAugment(2, 7) -> ToTensor ->
    Normalize. `horizontal_flip=False` gives the original's `train_transform_wohflip` (xGQA / VQA, where the flip is
    done by the dataset only when the question mentions no left/right).
    """
    steps: list[Callable] = [
        T.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BICUBIC)
    ]
    if horizontal_flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [RandAugment(2, 7), *_to_normalized_tensor(mean, std)]
    return T.Compose(steps)


def eval_transform(
    image_size: int, *, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> T.Compose:
    """Evaluation transform (the original's `test_transform`): Resize((S, S), bicubic) -> ToTensor -> Normalize.

    The image is squashed to a square (no centre crop, aspect ratio not kept), exactly like the original and like the
    `CCLMImageProcessorPil` of this package.
    """
    resize = T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC)
    return T.Compose([resize, *_to_normalized_tensor(mean, std)])


def region_image_transform(
    *, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD, generator: RandomSource = None
) -> T.Compose:
    """The original's `box_transform` for already cropped and resized region images: restricted RandAugment ->
    ToTensor -> Normalize. [`region_crop`] applies the same steps itself; this is for callers that crop on their own.
    """
    return T.Compose([region_rand_augment(generator=generator), *_to_normalized_tensor(mean, std)])


# =====================================================================================================================
# Region samples (`RegionMultiTextDataset`)
# =====================================================================================================================

# Words whose presence makes a horizontal flip change the meaning of a caption, for the six pre-training languages
# (en, de, fr, cs, ja, zh). Matched as lower-case substrings, like the original's `'left' in caption` ("bright"
# matches "right": a false positive only costs a skipped flip).
LEFT_RIGHT_KEYWORDS: tuple[str, ...] = (
    "left", "right",
    "links", "rechts",
    "gauche", "droite",
    "vlevo", "vpravo", "nalevo", "napravo", "zleva", "zprava",
    "levý", "levá", "levé", "levou", "levém", "pravý", "pravá", "pravé", "pravou", "pravém",
    "左", "右",
)  # fmt: skip


def caption_mentions_left_or_right(captions: object, keywords: Iterable[str] = LEFT_RIGHT_KEYWORDS) -> bool:
    """Whether any caption string in `captions` (a string, or dicts / lists of them, nested) mentions left or right.

    This is the test of the original's `careful_hflip`, fixed: the original applies `'left' in caption` to the
    multilingual caption *dicts* of the region shards, which tests the dict's keys (language codes) and is therefore
    never true, so the 4M pre-training (`careful_hflip: True`) in fact flipped every region image with p = 0.5. Here
    every string value is searched, case-insensitively, for the keywords of all pre-training languages.
    """
    keywords = tuple(keyword.lower() for keyword in keywords)
    stack = [captions]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            text = item.lower()
            if any(keyword in text for keyword in keywords):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


class RegionSample(NamedTuple):
    """Output of [`region_crop`].

    Attributes:
        pixel_values (`torch.FloatTensor` of shape `(3, image_size, image_size)`): Normalised image.
        boxes (`torch.FloatTensor` of shape `(num_kept, 4)`): Kept boxes as `(cx, cy, w, h) / image_size` (the bbox
            regression targets).
        indices (`list[int]`): Index in the input `boxes_xywh` of each kept box, in increasing order.
        boxes_xywh (`torch.DoubleTensor` of shape `(num_kept, 4)`): The same boxes as `(x, y, w, h)` pixels of the
            resized image, the exact values the original feeds to its patch mask (use with [`region_patch_mask`]).
    """

    pixel_values: torch.Tensor
    boxes: torch.Tensor
    indices: list[int]
    boxes_xywh: torch.Tensor


def region_crop(
    image: PIL.Image.Image,
    boxes_xywh: Sequence[Sequence[float]],
    chosen_index: int,
    image_size: int,
    rng: RandomSource = None,
    *,
    careful_hflip: bool = False,
    min_perc_in_image: float = 0.5,
    augment: RandAugment | bool = True,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    source: str = "<unknown>",
) -> RegionSample:
    """Build the image of one region-batch record and move its boxes along (the original's `RegionMultiTextDataset`).

    1. Boxes (pixels `x, y, w, h`, truncated to integers like the original's `get_bbox`) are clipped to the image; a
       chosen box with no area inside the image raises [`BadSampleError`]. (Deviation: the original rejects the whole
       record when the randomly chosen box pokes out of the image, which annotations such as Visual Genome often do by
       a pixel, and measures the other boxes' fraction inside the crop against their unclipped area.)
    2. Random crop containing it: `x0 ~ U{0..x}`, `y0 ~ U{0..y}`, `x1 ~ U{ceil(x+w)..W}`, `y1 ~ U{ceil(y+h)..H}`.
    3. Horizontal flip with p = 0.5, unless `careful_hflip` (the caller found "left"/"right" in a caption of the
       record, e.g. with [`caption_mentions_left_or_right`]). The random draw happens in both cases.
    4. Resize to `image_size x image_size` (bicubic, aspect ratio not kept).
    5. `augment`: the restricted RandAugment (photometric ops only) by default; `False` skips it, a [`RandAugment`]
       instance replaces it. Then ToTensor and Normalize.
    6. Every box (including the chosen one) is kept when *more than* `min_perc_in_image` of its area lies in the crop;
       kept boxes are clipped to the crop, flipped with the image, rescaled, and returned both as normalised
       `(cx, cy, w, h)` targets and as resized-image pixels. Degenerate boxes (`w <= 0` or `h <= 0`) are dropped (the
       original divides by their zero area and loses the record).

    Args:
        image: Decoded RGB image (see [`~cclm_hf.data.images.load_image`]).
        boxes_xywh: Element boxes of the record in pixels of `image`, `[x, y, w, h]` each.
        chosen_index: Index of the element the crop is built around (the original draws it uniformly).
        image_size: Output resolution (square).
        rng: Random source for the crop, the flip and the augmentation (`torch.Generator`, `random.Random`, or `None`
            for torch's global RNG).
        careful_hflip: Never flip (the record's captions mention left or right).
        min_perc_in_image: Minimal fraction (exclusive) of a box's area inside the crop for the box to be kept.
        augment: See step 5.
        mean, std: Normalisation constants (CLIP's by default).
        source: Record location used in error messages.

    Returns:
        [`RegionSample`] `(pixel_values, boxes, indices, boxes_xywh)`.
    """
    if not 0 <= chosen_index < len(boxes_xywh):
        raise BadSampleError(source, f"chosen box index {chosen_index} out of range ({len(boxes_xywh)} boxes)")
    generator = _Rng(rng)
    image = image.convert("RGB") if image.mode != "RGB" else image
    width, height = image.size

    def as_ints(box: Sequence[float], index: int) -> tuple[int, int, int, int]:
        if len(box) != 4:
            raise BadSampleError(source, f"box {index} must have 4 values [x, y, w, h], got {list(box)}")
        try:
            x, y, w, h = (int(v) for v in box)
        except (TypeError, ValueError) as error:
            raise BadSampleError(source, f"box {index} has non-numeric values {list(box)}") from error
        return x, y, w, h

    # 1. chosen box, clipped to the image
    x, y, w, h = as_ints(boxes_xywh[chosen_index], chosen_index)
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, width), min(y + h, height)
    if right <= left or bottom <= top:
        raise BadSampleError(
            source, f"chosen box {chosen_index} {[x, y, w, h]} has no area inside the {width}x{height} image"
        )

    # 2. random crop containing the chosen box (same draws, in the same order, as the original)
    x0 = generator.randint(0, left)
    y0 = generator.randint(0, top)
    x1 = generator.randint(right, width)
    y1 = generator.randint(bottom, height)
    crop_w, crop_h = x1 - x0, y1 - y0
    image = image.crop((x0, y0, x1, y1))

    # 3. flip, 4. resize, 5. photometric augmentation + tensor
    do_hflip = generator.random() < 0.5 and not careful_hflip
    if do_hflip:
        image = image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.resize((image_size, image_size), PIL.Image.Resampling.BICUBIC)
    if augment is True:
        augment = region_rand_augment()
    if augment:
        image = augment(image, generator=rng)
    pixel_values = TF.normalize(TF.to_tensor(image), mean, std)

    # 6. boxes (clipped to the image first, like the chosen one)
    kept_indices: list[int] = []
    kept_xywh: list[list[float]] = []
    for index, box in enumerate(boxes_xywh):
        bx, by, bw, bh = as_ints(box, index)
        bx, by, bw, bh = max(bx, 0), max(by, 0), min(bx + bw, width) - max(bx, 0), min(by + bh, height) - max(by, 0)
        if bw <= 0 or bh <= 0:
            continue
        xx, yy = max(x0, bx), max(y0, by)
        xm, ym = min(x1, bx + bw), min(y1, by + bh)
        if xm <= xx or ym <= yy or (xm - xx) * (ym - yy) / (bw * bh) <= min_perc_in_image:
            continue
        cx, cy, cw, ch = xx - x0, yy - y0, xm - xx, ym - yy
        if do_hflip:
            cx = crop_w - cx - cw
        kept_indices.append(index)
        kept_xywh.append(
            [
                image_size / crop_w * cx,
                image_size / crop_h * cy,
                image_size / crop_w * cw,
                image_size / crop_h * ch,
            ]
        )
    boxes_pixels = torch.tensor(kept_xywh, dtype=torch.float64).reshape(-1, 4)
    targets = torch.cat([boxes_pixels[:, :2] + boxes_pixels[:, 2:] / 2, boxes_pixels[:, 2:]], dim=1) / image_size
    return RegionSample(pixel_values, targets.float(), kept_indices, boxes_pixels)


def region_patch_mask(
    box_xywh: Sequence[float] | torch.Tensor, image_size: int, patch_stride: int = 32
) -> torch.Tensor:
    """Cross-attention mask of a region text over the image tokens `[pooled, patch_1, ..., patch_{G*G}]`.

    `patch_stride` is the total stride of the vision encoder's last stage, `4 * 2 ** (num_stages - 1)`: 32 for Swin-B
    (the original's yaml `patch_size`), 16 for a two-stage test model; `G = image_size // patch_stride`. The mask is 1
    for the pooled token (index 0) and for the patches in columns `floor(x / s) .. ceil((x + w) / s) - 1` and rows
    `floor(y / s) .. ceil((y + h) / s) - 1` (clamped to the grid, at least one row and one column), at index
    `1 + row * G + col`; 0 elsewhere. Same arithmetic as the original's `get_image_attns`, plus a clamp at 0 for boxes
    starting left of / above the image.

    Args:
        box_xywh: `(x, y, w, h)` in pixels of the `image_size x image_size` image (e.g. a row of
            `RegionSample.boxes_xywh`).
        image_size: Side of the (square) model input.
        patch_stride: Pixels per patch token side.

    Returns:
        `torch.LongTensor` of shape `(1 + G * G,)`.
    """
    if image_size % patch_stride != 0:
        raise ValueError(f"image_size ({image_size}) must be a multiple of patch_stride ({patch_stride})")
    grid = image_size // patch_stride
    x, y, w, h = (float(v) for v in box_xywh)

    def span(start: float, length: float) -> tuple[int, int]:
        low = max(0, min(math.floor(start / patch_stride), grid - 1))
        high = max(low + 1, min(math.ceil((start + length) / patch_stride), grid))
        return low, high

    col_low, col_high = span(x, w)
    row_low, row_high = span(y, h)
    mask = torch.zeros(1 + grid * grid, dtype=torch.long)
    mask[0] = 1
    mask[1:].view(grid, grid)[row_low:row_high, col_low:col_high] = 1
    return mask
