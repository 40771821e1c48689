"""The package's error for bad input that the user can fix."""

from __future__ import annotations


class CCLMUserError(Exception):
    """A file, folder or argument the user gave does not work; the message names it and says why.

    `cclm-hf` prints the message of these errors as one line and exits with status 1, without a traceback;
    anything else is a bug and keeps its traceback.
    """


__all__ = ["CCLMUserError"]
