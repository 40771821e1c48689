"""Torchvision image processor for CCLM."""

from __future__ import annotations

from typing import TYPE_CHECKING

import PIL.Image
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    infer_channel_dimension_format,
)
from transformers.utils import logging


if TYPE_CHECKING:
    import torch


logger = logging.get_logger(__name__)


class CCLMImageProcessor(TorchvisionBackend):
    r"""
    Constructs a CCLM image processor (torchvision backend, batched, can run on GPU).

    Implements the evaluation transform of the original CCLM code base: convert to RGB, resize to a *square*
    `size["height"] x size["width"]` with bicubic resampling (no center crop, the aspect ratio is not kept), rescale by
    1/255 and normalize with the CLIP mean/std. See [`CCLMImageProcessorPil`] for the original code.

    The original resized PIL images with `PIL.Image.resize`; this backend resizes `uint8` tensors with
    `torchvision.transforms.v2.functional.resize(..., antialias=True)`, whose bicubic kernel follows PIL's (horizontal
    pass, then vertical pass, `uint8` rounding in between) but rounds slightly differently: measured on natural-looking
    test pictures, at most 2 grey levels apart (about 0.03 after CLIP normalization), with fewer than 0.5% of the
    values differing at all. Recent Pillow releases (13.0 does, 9.5 - of CCLM's time - does not) run the *vertical*
    pass first when the height shrinks more than the width; clipping of bicubic overshoot then differs along saturated
    edges, and for such (portrait) images this backend and `PIL.Image.resize` can differ by up to about 25 grey levels
    on a few percent of the values. Use [`CCLMImageProcessorPil`] when agreement with `PIL.Image.resize` matters.

    RGB conversion follows `PIL.Image.convert("RGB")` like the original: an alpha channel is *dropped* (transparent
    pixels keep their stored colour), whereas transformers' default composites transparent pixels over white.

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

    def process_image(
        self,
        image: ImageInput,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        device: torch.device | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Convert one input to a channels-first tensor; PIL images are converted with `Image.convert("RGB")`."""
        if do_convert_rgb and isinstance(image, PIL.Image.Image):
            # The base class would composite transparency over white; the original CCLM pipeline drops alpha.
            image = image.convert("RGB")
        return super().process_image(
            image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format, device=device, **kwargs
        )

    def convert_to_rgb(
        self, image: torch.Tensor, input_data_format: str | ChannelDimension | None = None
    ) -> torch.Tensor:
        """Convert a tensor to 3 channels: grey is repeated, an alpha channel is dropped (as `convert("RGB")` does)."""
        if image.ndim == 3:
            if input_data_format is None:
                input_data_format = infer_channel_dimension_format(image, num_channels=(1, 3, 4))
            channel_axis = -1 if input_data_format == ChannelDimension.LAST else -3
            if image.shape[channel_axis] == 4:
                return image.narrow(channel_axis, 0, 3)
        return super().convert_to_rgb(image, input_data_format=input_data_format)


__all__ = ["CCLMImageProcessor"]
