"""CCLM image processors against an independent re-implementation of the original CCLM test transform."""

import numpy as np
import pytest
import torch
from PIL import Image

from cclm_hf.image_processing_cclm import CCLMImageProcessor
from cclm_hf.image_processing_pil_cclm import CCLMImageProcessorPil


CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])

# torchvision's antialiased bicubic resize of uint8 tensors follows PIL's kernel and pass order (horizontal, then
# vertical, uint8 rounding in between) but rounds slightly differently. Measured on `natural_image` pictures (12 input
# sizes from 50x60 to 1000x700 and 60x500, outputs 64 to 384) against that pass order: at most 2 grey levels apart,
# at most 0.43% of the values differ at all, mean |difference| <= 6.2e-5 after normalisation. The bounds below leave
# a small margin over those measurements.
TORCHVISION_MAX_GREY_LEVELS = 2
TORCHVISION_MAX_DIFFERING_FRACTION = 0.01
TORCHVISION_MAX_MEAN_ABS_DIFF = 2e-4


def reference_transform(image: Image.Image, height: int = 224, width: int = 224) -> np.ndarray:
    """The original CCLM test transform, written with PIL + NumPy only (float64, CHW)."""
    image = image.convert("RGB").resize((width, height), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return ((pixels - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


def horizontal_first_reference_transform(image: Image.Image, height: int = 224, width: int = 224) -> np.ndarray:
    """`reference_transform` with PIL's passes forced into the order of Pillow 9.x (the Pillow of CCLM's time).

    Recent Pillow (13.0) resizes vertically first when the height shrinks more than the width, which moves pixels
    along saturated edges by up to ~25 grey levels; two single-axis resizes pin the horizontal-first order.
    """
    image = image.convert("RGB")
    image = image.resize((width, image.height), Image.BICUBIC).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return ((pixels - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


def in_grey_levels(difference: np.ndarray) -> np.ndarray:
    """Convert a difference of normalised pixel values (CHW) back to 8-bit grey levels."""
    return np.abs(difference) * CLIP_STD[:, None, None] * 255.0


def pixel_values(processor, images, **kwargs) -> np.ndarray:
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"].numpy()


PROCESSOR_CLASSES = [CCLMImageProcessor, CCLMImageProcessorPil]
# (height, width). Landscape and square inputs: every Pillow release resizes them horizontally first.
LANDSCAPE_INPUT_SIZES = [(300, 400), (97, 131), (224, 224), (50, 60), (60, 500)]
# Portrait inputs: recent Pillow resizes some of them vertically first.
PORTRAIT_INPUT_SIZES = [(150, 110), (1000, 700), (130, 100), (500, 60)]


def size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def assert_close_to_torchvision_bounds(output: np.ndarray, reference: np.ndarray):
    difference = output - reference
    levels = in_grey_levels(difference)
    assert levels.max() <= TORCHVISION_MAX_GREY_LEVELS + 1e-3
    assert (levels > 0.5).mean() <= TORCHVISION_MAX_DIFFERING_FRACTION
    assert np.abs(difference).mean() <= TORCHVISION_MAX_MEAN_ABS_DIFF


def test_defaults():
    for processor_class in PROCESSOR_CLASSES:
        processor = processor_class()
        assert processor.size.height == processor.size.width == 224
        assert processor.do_resize and processor.do_rescale and processor.do_normalize and processor.do_convert_rgb
        assert not processor.do_center_crop
        assert int(processor.resample) == int(Image.BICUBIC)
        np.testing.assert_allclose(processor.image_mean, CLIP_MEAN)
        np.testing.assert_allclose(processor.image_std, CLIP_STD)
        assert processor.model_input_names == ["pixel_values"]
    assert CCLMImageProcessor().backend == "torchvision"
    assert CCLMImageProcessorPil().backend == "pil"


@pytest.mark.parametrize("input_size", LANDSCAPE_INPUT_SIZES + PORTRAIT_INPUT_SIZES, ids=size_id)
def test_pil_backend_matches_reference(natural_image, input_size):
    image = natural_image(*input_size, seed=input_size[0])
    output = pixel_values(CCLMImageProcessorPil(), image)
    assert output.shape == (1, 3, 224, 224)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output[0], reference_transform(image), rtol=0, atol=1e-5)


@pytest.mark.parametrize("input_size", LANDSCAPE_INPUT_SIZES, ids=size_id)
@pytest.mark.parametrize("output_size", [96, 224, 384])
def test_torchvision_backend_close_to_reference(natural_image, input_size, output_size):
    image = natural_image(*input_size, seed=input_size[0])
    output = pixel_values(CCLMImageProcessor(size={"height": output_size, "width": output_size}), image)
    assert output.shape == (1, 3, output_size, output_size)
    assert_close_to_torchvision_bounds(output[0], reference_transform(image, output_size, output_size))


@pytest.mark.parametrize("input_size", LANDSCAPE_INPUT_SIZES + PORTRAIT_INPUT_SIZES, ids=size_id)
@pytest.mark.parametrize("output_size", [96, 224])
def test_torchvision_backend_close_to_horizontal_first_reference(natural_image, input_size, output_size):
    image = natural_image(*input_size, seed=input_size[0])
    output = pixel_values(CCLMImageProcessor(size={"height": output_size, "width": output_size}), image)
    reference = horizontal_first_reference_transform(image, output_size, output_size)
    assert_close_to_torchvision_bounds(output[0], reference)


def test_no_center_crop_and_aspect_ratio_not_kept():
    # Left half black, right half white, in a very wide image: a center crop (or an aspect-preserving resize) would
    # not keep both halves side by side over the full output width.
    array = np.zeros((50, 400, 3), dtype=np.uint8)
    array[:, 200:] = 255
    for processor_class in PROCESSOR_CLASSES:
        output = pixel_values(processor_class(), Image.fromarray(array))[0]
        assert output.shape == (3, 224, 224)
        black, white = (0.0 - CLIP_MEAN[0]) / CLIP_STD[0], (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
        np.testing.assert_allclose(output[0, :, :100], black, atol=1e-5)
        np.testing.assert_allclose(output[0, :, 124:], white, atol=1e-5)


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_greyscale_input(natural_image, processor_class):
    image = natural_image(120, 90, mode="L")
    output = pixel_values(processor_class(), image)
    assert output.shape == (1, 3, 224, 224)
    # The three channels come from the same grey values.
    if processor_class is CCLMImageProcessorPil:
        np.testing.assert_allclose(output[0], reference_transform(image), rtol=0, atol=1e-5)
    else:
        assert_close_to_torchvision_bounds(output[0], horizontal_first_reference_transform(image))
    grey = output[0] * CLIP_STD[:, None, None] + CLIP_MEAN[:, None, None]
    np.testing.assert_allclose(grey[0], grey[1], atol=1e-5)
    np.testing.assert_allclose(grey[0], grey[2], atol=1e-5)


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_rgba_input_drops_alpha_like_pil_convert(natural_image, processor_class):
    # Half of the picture is fully transparent. The original pipeline (`Image.convert("RGB")`) keeps the stored
    # colours there; transformers' default conversion would paint those pixels white.
    rgba = natural_image(100, 100).convert("RGBA")
    alpha = np.full((100, 100), 255, dtype=np.uint8)
    alpha[:, :50] = 0
    rgba.putalpha(Image.fromarray(alpha))
    output = pixel_values(processor_class(), rgba)[0]

    reference = reference_transform(rgba)  # convert("RGB") drops alpha
    white_composited = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    assert np.abs(reference_transform(white_composited) - reference).max() > 1.0  # the two conventions differ a lot
    levels = in_grey_levels(output - reference)
    assert levels.max() <= (0.01 if processor_class is CCLMImageProcessorPil else TORCHVISION_MAX_GREY_LEVELS + 1e-3)


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_numpy_and_torch_inputs(natural_image, processor_class):
    image = natural_image(80, 120, seed=3)
    array = np.array(image)  # HWC uint8 (writable: torch warns on read-only arrays)
    processor = processor_class()
    from_pil = pixel_values(processor, image)
    from_numpy_hwc = pixel_values(processor, array)
    from_numpy_chw = pixel_values(processor, np.ascontiguousarray(array.transpose(2, 0, 1)))
    from_torch_chw = pixel_values(processor, torch.from_numpy(array).permute(2, 0, 1).contiguous())
    for output in (from_numpy_hwc, from_numpy_chw, from_torch_chw):
        assert output.shape == (1, 3, 224, 224)
        np.testing.assert_allclose(output, from_pil, rtol=0, atol=1e-6)

    # A 4-channel array loses its alpha channel, as a PIL RGBA image does.
    rgba_array = np.concatenate([array, np.zeros((80, 120, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_allclose(pixel_values(processor, rgba_array), from_pil, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        pixel_values(processor, torch.from_numpy(rgba_array).permute(2, 0, 1).contiguous()), from_pil, atol=1e-6
    )


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_batch_of_different_sizes(natural_image, processor_class):
    images = [natural_image(60, 80, seed=1), natural_image(200, 100, seed=2), natural_image(60, 80, seed=3)]
    processor = processor_class()
    batch = pixel_values(processor, images)
    assert batch.shape == (3, 3, 224, 224)
    for index, image in enumerate(images):
        np.testing.assert_allclose(batch[index], pixel_values(processor, image)[0], rtol=0, atol=1e-6)
    assert not np.allclose(batch[0], batch[2])  # same size, different content: no mix-up in the grouping by shape


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_custom_size(natural_image, processor_class):
    image = natural_image(150, 110, seed=5)
    # At init, as an int (square), and at call time, also non-square.
    assert pixel_values(processor_class(size=96), image).shape == (1, 3, 96, 96)
    output = pixel_values(processor_class(size={"height": 96, "width": 96}), image)
    assert output.shape == (1, 3, 96, 96)
    non_square = pixel_values(processor_class(), image, size={"height": 64, "width": 128})
    assert non_square.shape == (1, 3, 64, 128)
    if processor_class is CCLMImageProcessorPil:
        np.testing.assert_allclose(output[0], reference_transform(image, 96, 96), rtol=0, atol=1e-5)
        np.testing.assert_allclose(non_square[0], reference_transform(image, 64, 128), rtol=0, atol=1e-5)
    else:
        assert_close_to_torchvision_bounds(output[0], horizontal_first_reference_transform(image, 96, 96))
        assert_close_to_torchvision_bounds(non_square[0], horizontal_first_reference_transform(image, 64, 128))


def test_return_types(natural_image):
    image = natural_image(64, 64)
    assert isinstance(CCLMImageProcessorPil()(image, return_tensors="np")["pixel_values"], np.ndarray)
    outputs = CCLMImageProcessor()(image, return_tensors="pt")
    assert list(outputs.keys()) == ["pixel_values"]
    assert outputs["pixel_values"].dtype == torch.float32


@pytest.mark.parametrize("processor_class", PROCESSOR_CLASSES)
def test_save_and_load(tmp_path, natural_image, processor_class):
    processor = processor_class(size={"height": 128, "width": 128})
    processor.save_pretrained(tmp_path)
    reloaded = processor_class.from_pretrained(tmp_path)
    assert type(reloaded) is processor_class
    assert reloaded.size.height == reloaded.size.width == 128
    assert int(reloaded.resample) == int(Image.BICUBIC)
    image = natural_image(70, 90)
    np.testing.assert_array_equal(pixel_values(reloaded, image), pixel_values(processor, image))
