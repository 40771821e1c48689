"""Data pipelines: pre-training streams, masking, collators."""

# Pre-training readers, streams and collators.
from .pretraining import (  # noqa: F401
    BadSampleCounter,
    ImageCaptionCollator,
    ImageCaptionStream,
    ParallelTextCollator,
    ParallelTextStream,
    PretrainingStream,
    RegionCollator,
    RegionStream,
)
from .readers import HFDatasetReader, JsonlReader, RecordReader, flatten_webdataset_sample  # noqa: F401
