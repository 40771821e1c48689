"""The transformers releases this package is tested with, checked when `cclm_hf` is imported.

The package composes transformers' Swin and XLM-R building blocks, whose internal names and signatures move between
5.x minor releases: on an untested release it could fail in odd places or, worse, load weights wrongly. Keep
`TESTED_TRANSFORMERS` equal to the `transformers` requirement in `pyproject.toml` (a test checks it) and widen both
only after the test suite passes on the new release.
"""

from __future__ import annotations

import os
import warnings

from packaging.specifiers import SpecifierSet


TESTED_TRANSFORMERS = ">=5.24,<5.30"
ALLOW_UNTESTED_TRANSFORMERS = "CCLM_HF_ALLOW_UNTESTED_TRANSFORMERS"


def check_transformers_version(version: str | None = None) -> None:
    """Raise `ImportError` when `version` (default: the installed transformers) is outside `TESTED_TRANSFORMERS`;
    only warn when the environment variable `CCLM_HF_ALLOW_UNTESTED_TRANSFORMERS=1` is set."""
    if version is None:
        import transformers

        version = transformers.__version__
    if SpecifierSet(TESTED_TRANSFORMERS).contains(version, prereleases=True):
        return
    message = (
        f"cclm-hf is tested with transformers{TESTED_TRANSFORMERS}, but transformers {version} is installed: "
        f"install a tested release (pip install 'transformers{TESTED_TRANSFORMERS}')"
    )
    if os.environ.get(ALLOW_UNTESTED_TRANSFORMERS) == "1":
        warnings.warn(f"{message}; continuing because {ALLOW_UNTESTED_TRANSFORMERS}=1", stacklevel=2)
        return
    raise ImportError(f"{message}, or set {ALLOW_UNTESTED_TRANSFORMERS}=1 to try this one at your own risk")


__all__ = ["ALLOW_UNTESTED_TRANSFORMERS", "TESTED_TRANSFORMERS", "check_transformers_version"]
