"""Data pipelines: pre-training streams, masking, collators."""

# Pre-training readers, streams and collators.
from .collators import ImageCaptionCollator, ParallelTextCollator, RegionCollator  # noqa: F401
from .pretraining import (  # noqa: F401
    BadSampleCounter,
    ImageCaptionStream,
    ParallelTextStream,
    PretrainingStream,
    RegionStream,
)
from .readers import (  # noqa: F401
    HFDatasetReader,
    InMemoryReader,
    JsonlReader,
    RecordReader,
    flatten_webdataset_sample,
)
