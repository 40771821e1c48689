"""Tests of `cclm_hf.data.images` (decoding, bad samples) and `cclm_hf.data.transforms` (the original CCLM training
transforms: RandAugment, the torchvision compositions, region crops and region patch masks)."""

from __future__ import annotations

import base64
import io
import math
import pickle
import random

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import ImageEnhance, ImageFile, ImageOps
from torchvision import transforms as T

from cclm_hf.data.images import BadSampleError, load_image
from cclm_hf.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    RANDAUGMENT_OPS,
    REGION_RANDAUGMENT_OPS,
    RandAugment,
    caption_mentions_left_or_right,
    eval_transform,
    finetune_train_transform,
    pretraining_image_transform,
    region_crop,
    region_patch_mask,
    region_rand_augment,
    rotate,
    sharpness,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)


MEAN = np.array(CLIP_MEAN, dtype=np.float64)
STD = np.array(CLIP_STD, dtype=np.float64)


def random_image(width: int = 48, height: int = 40, seed: int = 0) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def square_image(size: int = 64, left: int = 41, top: int = 17, side: int = 6) -> PIL.Image.Image:
    """Black image with a white square whose pixel centres average to (left + 2.5, top + 2.5)."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[top : top + side, left : left + side] = 255
    return PIL.Image.fromarray(array)


def bright_centroid(image: PIL.Image.Image) -> tuple[float, float]:
    """Centroid (x, y) of the near-white pixels (the square; the grey fill and black background are excluded)."""
    ys, xs = np.nonzero(np.asarray(image)[..., 0] > 200)
    assert len(xs) > 0, "square vanished"
    return float(xs.mean()), float(ys.mean())


def single_op(name: str, seed: int) -> RandAugment:
    """RandAugment that always applies exactly one `name` op."""
    return RandAugment(1, 7, (name,), prob=1.0, generator=torch.Generator().manual_seed(seed))


def denormalize(pixel_values: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) float array in grey levels 0..255."""
    array = pixel_values.permute(1, 2, 0).double().numpy()
    return (array * STD + MEAN) * 255.0


# =====================================================================================================================
# RandAugment
# =====================================================================================================================


def test_randaugment_is_deterministic_under_a_seed():
    image = random_image()
    for make in (lambda: torch.Generator().manual_seed(123), lambda: random.Random(123)):
        first, second = RandAugment(generator=make()), RandAugment()
        generator = make()
        outputs_1 = [np.asarray(first(image)) for _ in range(12)]
        outputs_2 = [np.asarray(second(image, generator=generator)) for _ in range(12)]  # per-call generator
        for out_1, out_2 in zip(outputs_1, outputs_2, strict=True):
            np.testing.assert_array_equal(out_1, out_2)
        # the augmentation is not a constant: several distinct outputs over 12 draws
        assert len({out.tobytes() for out in outputs_1}) >= 3

    # torch's global RNG (the DataLoader-seeded default)
    augment = RandAugment()
    torch.manual_seed(7)
    run_1 = [np.asarray(augment(image)) for _ in range(8)]
    torch.manual_seed(7)
    run_2 = [np.asarray(augment(image)) for _ in range(8)]
    for out_1, out_2 in zip(run_1, run_2, strict=True):
        np.testing.assert_array_equal(out_1, out_2)

    with pytest.raises(TypeError):
        RandAugment(generator=np.random.default_rng(0))


def test_randaugment_defaults_match_the_original():
    augment = RandAugment()
    assert augment.num_ops == 2 and augment.magnitude == 7 and augment.prob == 0.5
    assert augment.ops == RANDAUGMENT_OPS and len(RANDAUGMENT_OPS) == 10
    assert augment.fill == (128, 128, 128)
    arguments = {name: augment._argument(name, _always(0.9)) for name in RANDAUGMENT_OPS}
    assert arguments["Brightness"] == pytest.approx(1.36) and arguments["Sharpness"] == pytest.approx(1.36)
    assert abs(arguments["ShearX"]) == pytest.approx(0.21) and abs(arguments["Rotate"]) == pytest.approx(21.0)
    assert abs(arguments["TranslateX"]) == pytest.approx(7.0)
    assert arguments["Identity"] is None and arguments["Equalize"] is None
    with pytest.raises(ValueError, match="unknown"):
        RandAugment(ops=("Solarize",))


def _always(value: float):
    class Fixed:
        def random(self) -> float:
            return value

    return Fixed()


def test_identity_leaves_the_image_unchanged():
    image = random_image()
    np.testing.assert_array_equal(np.asarray(single_op("Identity", 0)(image)), np.asarray(image))
    # num_ops=0 and prob=0 are no-ops too
    np.testing.assert_array_equal(np.asarray(RandAugment(0)(image)), np.asarray(image))
    np.testing.assert_array_equal(np.asarray(RandAugment(2, prob=0.0)(image)), np.asarray(image))


def test_brightness_multiplies_by_1_36_with_truncation():
    flat = PIL.Image.new("RGB", (16, 12), (100, 100, 100))
    out = np.asarray(single_op("Brightness", 0)(flat))
    assert (out == 136).all()
    # the original's float32 lookup table: 25 * 1.36 = 34 (float64 would give 33.999...), 200 * 1.36 clips at 255
    values = np.array([[[25, 50, 200]]], dtype=np.uint8)
    out = np.asarray(single_op("Brightness", 0)(PIL.Image.fromarray(values)))
    np.testing.assert_array_equal(out, [[[34, 68, 255]]])


def test_sharpness_matches_the_original_formula():
    image = random_image(20, 16, seed=3)
    array = np.asarray(image).astype(np.float64)
    padded_sum = sum(
        array[1 + dy : 15 + dy, 1 + dx : 19 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )  # 3x3 box sum of the interior
    smooth = np.rint((padded_sum + 4 * array[1:-1, 1:-1]) / 13)
    expected = array.copy()
    expected[1:-1, 1:-1] = np.clip(smooth + 1.36 * (array[1:-1, 1:-1] - smooth), 0, 255)
    out = np.asarray(single_op("Sharpness", 0)(image)).astype(np.float64)
    # the truncating uint8 cast may differ by one level where float32 and float64 round differently
    assert np.abs(out - np.floor(expected)).max() <= 1
    assert np.mean(out != np.floor(expected)) < 0.01
    np.testing.assert_array_equal(out[0], array[0])  # borders unchanged
    np.testing.assert_array_equal(out[:, -1], array[:, -1])
    assert not np.array_equal(out, array)
    # and it is Pillow's sharpness up to rounding (same kernel, same blend)
    reference = np.asarray(ImageEnhance.Sharpness(image).enhance(1.36)).astype(np.float64)
    assert np.abs(out - reference)[1:-1, 1:-1].max() <= 2
    assert sharpness(image, 1.0) is image


def test_autocontrast_and_equalize_are_pillows():
    array = np.random.default_rng(1).integers(60, 140, (24, 24, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(array)
    out = np.asarray(single_op("AutoContrast", 0)(image))
    # the original's table: per channel, int(v * 255 / (hi - lo) - lo * 255 / (hi - lo)) (truncation: hi -> 254 or 255)
    low, high = array.reshape(-1, 3).min(0).astype(np.float64), array.reshape(-1, 3).max(0).astype(np.float64)
    scale = 255.0 / (high - low)
    expected = np.clip(array * scale - low * scale, 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out.reshape(-1, 3).min(0) == 0).all()
    assert (out.reshape(-1, 3).max(0) >= 254).all()
    np.testing.assert_array_equal(out, np.asarray(ImageOps.autocontrast(image)))
    out = np.asarray(single_op("Equalize", 0)(image))
    np.testing.assert_array_equal(out, np.asarray(ImageOps.equalize(image)))
    assert not np.array_equal(out, array)


def test_translate_moves_the_content_by_7_pixels():
    image = square_image()
    x, y = bright_centroid(image)
    for name, axis in (("TranslateX", 0), ("TranslateY", 1)):
        shifts = set()
        for seed in range(12):
            out = single_op(name, seed)(image)
            moved = np.subtract(bright_centroid(out), (x, y))
            assert moved[1 - axis] == 0
            assert abs(moved[axis]) == pytest.approx(7.0, abs=1e-9)  # integer shift: exact with bilinear
            shifts.add(float(moved[axis]))
            # the uncovered 7-pixel band is filled with grey 128
            array = np.asarray(out)
            band = array[:, :7] if axis == 0 else array[:7]
            if moved[axis] > 0:
                assert (band == 128).all()
        assert shifts == {-7.0, 7.0}, f"{name}: both signs must occur"


def test_rotate_by_21_degrees_about_the_center():
    image = square_image()
    x, y = bright_centroid(image)
    angles = set()
    for seed in range(12):
        out = single_op("Rotate", seed)(image)
        new_x, new_y = bright_centroid(out)
        # OpenCV convention: centre (W/2, H/2) in pixel-centre coordinates, positive angle = counter-clockwise
        dx, dy = x - 32, y - 32
        angle = math.degrees(math.atan2(-(new_y - 32), new_x - 32) - math.atan2(-dy, dx))
        angle = (angle + 180) % 360 - 180
        assert abs(angle) == pytest.approx(21.0, abs=1.0)
        assert math.hypot(new_x - 32, new_y - 32) == pytest.approx(math.hypot(dx, dy), abs=0.3)
        angles.add(round(angle))
        assert (np.asarray(out)[0, 0] == 128).all()  # corner filled with grey
    assert angles == {-21, 21}


def test_shear_by_0_21():
    image = square_image()
    x, y = bright_centroid(image)
    for name in ("ShearX", "ShearY"):
        signs = set()
        for seed in range(12):
            new_x, new_y = bright_centroid(single_op(name, seed)(image))
            if name == "ShearX":
                shift, expected, other = new_x - x, 0.21 * y, new_y - y
            else:
                shift, expected, other = new_y - y, 0.21 * x, new_x - x
            assert abs(shift) == pytest.approx(expected, abs=0.3)
            assert abs(other) < 0.3
            signs.add(shift > 0)
        assert signs == {True, False}


def test_geometry_follows_opencv_warp_affine_convention():
    """Parameters that map pixel centres onto pixel centres make bilinear warps exact: compare with the OpenCV formulas
    (forward matrix, integer pixel centres, rotation about (W/2, H/2))."""
    array = np.random.default_rng(4).integers(0, 128, (64, 64, 3), dtype=np.uint8)  # < 128: fill is recognisable
    image = PIL.Image.fromarray(array)
    # rotation by +90 degrees: (x, y) -> (32 + (y - 32), 32 - (x - 32)) = (y, 64 - x), so out[Y, X] = in[X, 64 - Y]
    # (cos 90 is 6e-17, not 0: bilinear weights of 1 - 1e-16 may truncate one level lower; a half-pixel error in the
    # convention would blend neighbours of this noise image and differ by tens of levels)
    out = np.asarray(rotate(image, 90.0)).astype(int)
    assert np.abs(out[1:] - array[:, 64 - np.arange(1, 64)].transpose(1, 0, 2)).max() <= 1
    assert (out[0] == 128).all()  # source column x = 64 is outside the image
    # shear by 1: (x, y) -> (x + y, y)
    out = np.asarray(shear_x(image, 1.0))
    for y in (0, 5, 40):
        np.testing.assert_array_equal(out[y, y:], array[y, : 64 - y])
        assert (out[y, :y] == 128).all()
    out = np.asarray(shear_y(image, 1.0))
    np.testing.assert_array_equal(out[7:, 7], array[:57, 7])
    # translation by +3: content moves left (up) by 3
    np.testing.assert_array_equal(np.asarray(translate_x(image, 3.0))[:, :61], array[:, 3:])
    np.testing.assert_array_equal(np.asarray(translate_y(image, -3.0))[3:], array[:61])


def test_each_op_is_applied_with_probability_one_half_with_replacement():
    """Brightness x2: 100 -> 100 (neither applied, 1/4), 136 (one, 1/2), 184 (both, 1/4)."""
    image = PIL.Image.new("RGB", (2, 2), (100, 100, 100))
    trials = 3000
    rng = random.Random(0)
    augment = RandAugment(2, 7, ("Brightness",))
    counts = {100: 0, 136: 0, 184: 0}
    for _ in range(trials):
        counts[int(np.asarray(augment(image, generator=rng))[0, 0, 0])] += 1
    for value, p in ((100, 0.25), (136, 0.5), (184, 0.25)):
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(counts[value] - trials * p) < 5 * sigma, (value, counts)

    # ops are drawn uniformly *with replacement*: {Identity, Brightness} x2 always applied gives 184 in 1/4 of the
    # draws (both Brightness), impossible without replacement
    augment = RandAugment(2, 7, ("Identity", "Brightness"), prob=1.0)
    counts = {100: 0, 136: 0, 184: 0}
    for _ in range(trials):
        counts[int(np.asarray(augment(image, generator=rng))[0, 0, 0])] += 1
    for value, p in ((100, 0.25), (136, 0.5), (184, 0.25)):
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(counts[value] - trials * p) < 5 * sigma, (value, counts)


def test_region_randaugment_has_no_geometric_ops():
    augment = region_rand_augment()
    assert augment.ops == REGION_RANDAUGMENT_OPS
    assert set(augment.ops) == {"Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness"}
    generator = torch.Generator().manual_seed(0)
    drawn = {name for _ in range(300) for name, _ in augment.sample(generator)}
    assert drawn == set(REGION_RANDAUGMENT_OPS)


# =====================================================================================================================
# Compositions
# =====================================================================================================================


def test_pretraining_transform_structure_and_normalization():
    transform = pretraining_image_transform(64)
    crop, flip, augment, to_tensor, normalize = transform.transforms
    assert isinstance(crop, T.RandomResizedCrop) and crop.size == (64, 64) and crop.scale == (0.2, 1.0)
    assert crop.interpolation == T.InterpolationMode.BICUBIC
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(augment, RandAugment) and augment.ops == RANDAUGMENT_OPS
    assert (augment.num_ops, augment.magnitude) == (2, 7)
    assert isinstance(to_tensor, T.ToTensor)
    assert tuple(normalize.mean) == CLIP_MEAN and tuple(normalize.std) == CLIP_STD

    finetune = finetune_train_transform(64)
    assert finetune.transforms[0].scale == (0.5, 1.0) and isinstance(finetune.transforms[1], T.RandomHorizontalFlip)
    no_flip = finetune_train_transform(64, horizontal_flip=False).transforms
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in no_flip)

    # A constant image stays constant through crop/flip/resize; RandAugment may brighten it or fill grey, but every
    # output is on the grid of normalised grey levels, and unchanged outputs map to the exact normalised colour.
    color = np.array([200, 120, 40], dtype=np.float64)
    expected = (color / 255.0 - MEAN) / STD
    image = PIL.Image.new("RGB", (90, 70), tuple(int(c) for c in color))
    exact = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = transform(image)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32
        levels = denormalize(out)
        np.testing.assert_allclose(levels, np.round(levels), atol=2e-3)
        if np.allclose(out.numpy(), expected[:, None, None], atol=1e-6, rtol=0):
            exact += 1
    assert exact >= 5  # P(unchanged) = 0.7 ** 2 per image


def test_eval_transform_matches_pil_and_numpy():
    image = random_image(123, 77, seed=5)
    out = eval_transform(64)(image)
    resized = np.asarray(image.resize((64, 64), PIL.Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    expected = ((resized - MEAN) / STD).transpose(2, 0, 1)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, rtol=0)


# =====================================================================================================================
# Region samples
# =====================================================================================================================


def region_image() -> tuple[PIL.Image.Image, list[list[int]]]:
    """Grey 200x150 image; red box at (50, 40, 60, 30) with a green mark in its left third; a second box elsewhere."""
    array = np.full((150, 200, 3), 90, dtype=np.uint8)
    array[40:70, 50:110] = (230, 20, 20)
    array[46:64, 52:68] = (20, 230, 20)
    return PIL.Image.fromarray(array), [[50, 40, 60, 30], [150, 100, 30, 30]]


def green_mark_x(levels: np.ndarray) -> float:
    return float(np.nonzero((levels[..., 1] > 150) & (levels[..., 0] < 100))[1].mean())


def test_region_crop_moves_the_chosen_box_with_the_image():
    image, boxes = region_image()
    flipped = set()
    for seed in range(20):
        sample = region_crop(image, boxes, 0, 64, random.Random(seed), augment=False)
        assert sample.pixel_values.shape == (3, 64, 64)
        assert 0 in sample.indices
        row = sample.indices.index(0)
        cx, cy, w, h = (sample.boxes[row] * 64).tolist()
        np.testing.assert_allclose(sample.boxes_xywh[row].numpy(), [cx - w / 2, cy - h / 2, w, h], atol=1e-4)
        levels = denormalize(sample.pixel_values)
        coloured = np.abs(levels - 90).max(axis=2) > 60  # red or green pixels (bicubic halo excluded)
        ys, xs = np.nonzero(coloured)
        assert abs(xs.min() - (cx - w / 2)) <= 1.5 and abs(xs.max() + 1 - (cx + w / 2)) <= 1.5
        assert abs(ys.min() - (cy - h / 2)) <= 1.5 and abs(ys.max() + 1 - (cy + h / 2)) <= 1.5
        # the green mark is in the left third of the box, or the right third when the image was flipped
        is_flipped = green_mark_x(levels) > cx
        flipped.add(is_flipped)

        careful = region_crop(image, boxes, 0, 64, random.Random(seed), augment=False, careful_hflip=True)
        assert green_mark_x(denormalize(careful.pixel_values)) < careful.boxes[careful.indices.index(0), 0] * 64
        if is_flipped:  # same crop, mirrored
            torch.testing.assert_close(careful.pixel_values, sample.pixel_values.flip(-1))
            torch.testing.assert_close(careful.boxes[:, 0], 1 - sample.boxes[:, 0])
        else:
            torch.testing.assert_close(careful.pixel_values, sample.pixel_values)
    assert flipped == {True, False}


class LowestDraws(random.Random):
    """Deterministic random source: every `randint` returns its lower bound, `random()` returns `value`."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def randint(self, a: int, b: int) -> int:
        return a

    def random(self) -> float:
        return self.value


def test_region_crop_keeps_boxes_more_than_half_inside():
    image = PIL.Image.new("RGB", (200, 150), (90, 90, 90))
    boxes = [
        [0, 0, 150, 100],  # chosen: with the lowest draws the crop is (0, 0, 150, 100)
        [140, 10, 20, 10],  # exactly 50% inside the crop: dropped (the test is "more than")
        [135, 20, 20, 10],  # 75% inside: kept, clipped to w = 15
        [145, 30, 20, 10],  # 25% inside: dropped
        [10, 10, 0, 10],  # degenerate: dropped
        [20.7, 30.2, 40.9, 10.5],  # floats are truncated to integers like the original: (20, 30, 40, 10)
    ]
    scale = np.array([100 / 150, 100 / 100, 100 / 150, 100 / 100])
    sample = region_crop(image, boxes, 0, 100, LowestDraws(0.9), augment=False)  # 0.9: no flip
    assert sample.indices == [0, 2, 5]
    expected_xywh = np.array([[0, 0, 150, 100], [135, 20, 15, 10], [20, 30, 40, 10]]) * scale
    np.testing.assert_allclose(sample.boxes_xywh.numpy(), expected_xywh, atol=1e-9)
    expected = np.concatenate([expected_xywh[:, :2] + expected_xywh[:, 2:] / 2, expected_xywh[:, 2:]], 1) / 100
    np.testing.assert_allclose(sample.boxes.numpy(), expected, atol=1e-6)
    assert sample.boxes.dtype == torch.float32

    flipped = region_crop(image, boxes, 0, 100, LowestDraws(0.1), augment=False)  # 0.1: flip, x -> W - x - w
    assert flipped.indices == [0, 2, 5]
    mirrored = np.array([[0, 0, 150, 100], [0, 20, 15, 10], [90, 30, 40, 10]]) * scale
    np.testing.assert_allclose(flipped.boxes_xywh.numpy(), mirrored, atol=1e-9)
    careful = region_crop(image, boxes, 0, 100, LowestDraws(0.1), augment=False, careful_hflip=True)
    np.testing.assert_allclose(careful.boxes_xywh.numpy(), expected_xywh, atol=1e-9)

    lenient = region_crop(image, boxes, 0, 100, LowestDraws(0.9), augment=False, min_perc_in_image=0.2)
    assert lenient.indices == [0, 1, 2, 3, 5]

    # boxes poking out of the image are clipped to it (the chosen one included); chosen box outside: bad sample
    sample = region_crop(image, [[190, 140, 40, 40]], 0, 100, random.Random(0), careful_hflip=True)
    assert sample.indices == [0]
    x, y, w, h = sample.boxes_xywh[0].tolist()  # clipped to (190, 140, 10, 10): the crop ends at the image corner
    assert x + w == pytest.approx(100) and y + h == pytest.approx(100) and w > 0 and h > 0
    boxes = [[0, 0, 200, 150], [190, 140, 40, 40], [-10, -10, 20, 30]]
    sample = region_crop(image, boxes, 0, 100, random.Random(0), careful_hflip=True)  # crop = whole image
    assert sample.indices == [0, 1, 2]
    np.testing.assert_allclose(sample.boxes_xywh[1:].numpy(), [[95, 140 / 1.5, 5, 10 / 1.5], [0, 0, 5, 20 / 1.5]])
    with pytest.raises(BadSampleError, match="regions.jsonl:7"):
        region_crop(image, [[300, 10, 20, 20]], 0, 100, random.Random(0), source="regions.jsonl:7")
    with pytest.raises(BadSampleError, match="out of range"):
        region_crop(image, [[0, 0, 10, 10]], 3, 100, random.Random(0))


def test_region_crop_is_deterministic_and_augments_photometrically():
    image, boxes = region_image()
    first = region_crop(image, boxes, 0, 64, torch.Generator().manual_seed(3))
    second = region_crop(image, boxes, 0, 64, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first.pixel_values, second.pixel_values, rtol=0, atol=0)
    torch.testing.assert_close(first.boxes, second.boxes, rtol=0, atol=0)
    plain = [region_crop(image, boxes, 0, 64, random.Random(s), augment=False).pixel_values for s in range(10)]
    augmented = [region_crop(image, boxes, 0, 64, random.Random(s)).pixel_values for s in range(10)]
    assert any(not torch.equal(a, b) for a, b in zip(plain, augmented, strict=True))


def test_caption_mentions_left_or_right():
    assert caption_mentions_left_or_right({"en": "A dog on the Left", "de": "Ein Hund"})
    assert caption_mentions_left_or_right([{"en": "a dog"}, {"zh": "右边的狗"}])
    assert caption_mentions_left_or_right({"de": "Der Hund rechts"})
    assert not caption_mentions_left_or_right([{"en": "a dog", "fr": "un chien"}, "a cat"])
    # the original tested the dict *keys*; a language code never matches
    assert not caption_mentions_left_or_right({"left": "a dog"})


# =====================================================================================================================
# Region patch mask
# =====================================================================================================================


def _patches(mask: torch.Tensor, grid: int) -> set[tuple[int, int]]:
    assert mask[0] == 1 and mask.dtype == torch.long and mask.shape == (1 + grid * grid,)
    return {divmod(i - 1, grid) for i in torch.nonzero(mask).flatten().tolist() if i > 0}


def test_region_patch_mask_hand_computed():
    assert _patches(region_patch_mask([0, 0, 224, 224], 224), 7) == {(r, c) for r in range(7) for c in range(7)}
    # columns floor(40/32)=1 .. ceil(90/32)-1=2, rows floor(70/32)=2 .. ceil(90/32)-1=2
    mask = region_patch_mask([40, 70, 50, 20], 224)
    assert _patches(mask, 7) == {(2, 1), (2, 2)}
    assert torch.nonzero(mask).flatten().tolist() == [0, 16, 17]
    # box on the bottom-right border -> last patch, index 49
    assert torch.nonzero(region_patch_mask([200, 210, 24, 14], 224)).flatten().tolist() == [0, 49]
    # tiny and empty boxes still get one patch
    assert _patches(region_patch_mask([64.2, 64.2, 0.5, 0.5], 224), 7) == {(2, 2)}
    assert _patches(region_patch_mask([64, 64, 0, 0], 224), 7) == {(2, 2)}
    assert _patches(region_patch_mask([224, 224, 0, 0], 224), 7) == {(6, 6)}
    # two-stage tiny model: stride 16
    assert _patches(region_patch_mask([16, 0, 17, 16], 64, patch_stride=16), 4) == {(0, 1), (0, 2)}
    with pytest.raises(ValueError):
        region_patch_mask([0, 0, 1, 1], 100, patch_stride=32)


def test_region_patch_mask_equals_patch_overlap():
    """For boxes of positive size, the arithmetic selects exactly the patches overlapping the box."""
    rng = np.random.default_rng(0)
    stride, size = 32, 384
    grid = size // stride
    for _ in range(200):
        x, y = rng.uniform(0, size - 1, 2)
        w, h = rng.uniform(0.1, size - x), rng.uniform(0.1, size - y)
        expected = {
            (r, c)
            for r in range(grid)
            for c in range(grid)
            if c * stride < x + w and (c + 1) * stride > x and r * stride < y + h and (r + 1) * stride > y
        }
        assert _patches(region_patch_mask([x, y, w, h], size, stride), grid) == expected


# =====================================================================================================================
# load_image
# =====================================================================================================================


def encoded(image: PIL.Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_load_image_accepts_all_input_kinds(tmp_path):
    image = random_image(32, 24, seed=9)
    png = encoded(image, "PNG")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png)
    pixels = np.asarray(image)

    for value, kwargs in (
        ("img/a.png", {"root": tmp_path}),
        (str(tmp_path / "img" / "a.png"), {}),
        (tmp_path / "img" / "a.png", {}),
        ("img/a.png", {"root": str(tmp_path), "is_path": True}),
        (png, {}),
        (bytearray(png), {}),
        (base64.b64encode(png).decode(), {}),
        (base64.b64encode(png).decode(), {"is_path": False}),
        ("data:image/png;base64," + base64.b64encode(png).decode(), {}),
        (base64.encodebytes(png).decode(), {}),  # with line breaks every 76 characters
        ({"bytes": png, "path": None}, {}),
        ({"bytes": None, "path": "img/a.png"}, {"root": tmp_path}),
        (PIL.Image.open(io.BytesIO(png)), {}),  # lazy PIL image
    ):
        out = load_image(value, source="test:1", **kwargs)
        assert out.mode == "RGB" and out.size == (32, 24)
        np.testing.assert_array_equal(np.asarray(out), pixels)

    jpeg = load_image(encoded(image, "JPEG"))
    assert jpeg.mode == "RGB" and jpeg.size == (32, 24)
    rgba = PIL.Image.fromarray(np.dstack([pixels, np.zeros((24, 32), np.uint8)]), "RGBA")
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), pixels)  # alpha dropped, colours kept
    gray = load_image(image.convert("L"))
    assert gray.mode == "RGB"
    assert load_image(image) is image  # already loaded RGB: no copy


def test_load_image_raises_bad_sample_errors_naming_the_source(tmp_path):
    image = random_image(64, 48, seed=2)
    jpeg, png = encoded(image, "JPEG"), encoded(image, "PNG")
    (tmp_path / "not_an_image.jpg").write_bytes(b"hello world, this is text")
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    source = "shard-007.jsonl:42"
    flag = ImageFile.LOAD_TRUNCATED_IMAGES

    cases = [
        (jpeg[: len(jpeg) // 2], "truncated"),
        (png[: len(png) // 2], "truncated"),
        (str(tmp_path / "truncated.jpg"), "truncated"),
        ("!!definitely not base64 nor a file!!", "not found"),
        (base64.b64encode(b"plain text, not an image").decode(), "not a recognised image"),
        ("@@@@", "invalid base64"),
        (str(tmp_path / "missing.jpg"), "not found"),
        ("missing.jpg", "not found"),
        (str(tmp_path / "not_an_image.jpg"), "not a recognised image"),
        (b"", "empty"),
        (None, "missing"),
        ({"bytes": None, "path": None}, "neither"),
        ({"bytes": b"\x89PNG\r\n\x1a\n garbage", "path": None}, ""),
    ]
    for value, reason in cases:
        kwargs = {"is_path": False} if value == "@@@@" else {}
        with pytest.raises(BadSampleError) as info:
            load_image(value, source=source, **kwargs)
        assert str(info.value).startswith(source), str(info.value)
        assert reason in str(info.value), str(info.value)
        assert info.value.source == source and isinstance(info.value, ValueError)

    assert ImageFile.LOAD_TRUNCATED_IMAGES == flag  # Pillow's global flag is never touched
    with pytest.raises(TypeError):
        load_image(12345)
    error = pickle.loads(pickle.dumps(BadSampleError("a.jsonl:1", "broken")))
    assert (error.source, error.reason, str(error)) == ("a.jsonl:1", "broken", "a.jsonl:1: broken")
