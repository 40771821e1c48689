"""PIL/NumPy image processor for CCLM (the backend that reproduces the original CCLM pipeline exactly)."""

from __future__ import annotations

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    PILImageResampling,
    infer_channel_dimension_format,
)
from transformers.utils import logging


logger = logging.get_logger(__name__)


class CCLMImageProcessorPil(PilBackend):
    r"""
    Constructs a CCLM image processor (PIL/NumPy backend).

    Reproduces the evaluation transform of the original CCLM code base:

    ```python
    image = PIL.Image.open(path).convert("RGB")
    transforms.Compose([
        transforms.Resize((image_res, image_res), interpolation=InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])
    ```

    i.e. convert to RGB, resize to a *square* `size["height"] x size["width"]` with bicubic resampling (no center crop,
    the aspect ratio is not kept), rescale by 1/255 and normalize with the CLIP mean/std. Since torchvision's `Resize`
    on a PIL image calls `PIL.Image.resize`, this backend matches the original code run with the same Pillow release
    pixel for pixel (up to float32 rounding). Pillow releases differ, though: recent ones (13.0 does, 9.5 does not)
    run the vertical resampling pass first when the height shrinks more than the width, which changes pixels along
    saturated edges of such images by up to ~20 grey levels compared with the Pillow 9.x of CCLM's time (horizontal
    pass first, as [`CCLMImageProcessor`] does). [`CCLMImageProcessor`] is the faster torchvision backend of the same
    pipeline.

    RGB conversion follows `PIL.Image.convert("RGB")` like the original: an alpha channel is *dropped* (transparent
    pixels keep their stored colour), whereas transformers' default composites transparent pixels over white.
    NumPy inputs with 4 channels are treated the same way (alpha dropped), 1-channel inputs are repeated to RGB.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize the image to `size`.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 224, "width": 224}`):
            Output size. CCLM's pre-training resolution is 224; its fine-tuned checkpoints mostly use 384.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BICUBIC`):
            Resampling filter used when resizing.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to rescale pixel values by `rescale_factor` (1/255).
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalize with `image_mean` / `image_std`.
        image_mean (`float` or `list[float]`, *optional*, defaults to `OPENAI_CLIP_MEAN`):
            Per-channel mean.
        image_std (`float` or `list[float]`, *optional*, defaults to `OPENAI_CLIP_STD`):
            Per-channel standard deviation.
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert inputs to RGB first.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 224, "width": 224}
    default_to_square = True
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def convert_to_rgb(
        self,
        image: PIL.Image.Image | np.ndarray,
        input_data_format: str | ChannelDimension | None = None,
    ) -> np.ndarray:
        """
        Convert an image to a 3-channel RGB array, the way `PIL.Image.convert("RGB")` does (alpha dropped, not
        composited). PIL images come back channels-last; arrays keep their channel layout.
        """
        if isinstance(image, PIL.Image.Image):
            return np.array(image.convert("RGB"))
        if image.ndim == 3:
            if input_data_format is None:
                input_data_format = infer_channel_dimension_format(image, num_channels=(1, 3, 4))
            channel_axis = -1 if input_data_format == ChannelDimension.LAST else 0
            if image.shape[channel_axis] == 4:
                return np.take(image, [0, 1, 2], axis=channel_axis)
        # 1- and 3-channel arrays: transformers' conversion (repeat grey / no-op) already matches PIL's.
        return super().convert_to_rgb(image, input_data_format=input_data_format)


__all__ = ["CCLMImageProcessorPil"]
