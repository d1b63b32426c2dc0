"""Errors a user can fix. Entry points print their message alone (no traceback) and exit 1.

Set HYDRA_FULL_ERROR=1 to see the full traceback instead.
"""

from __future__ import annotations


class NSMError(Exception):
    """Base of the project's own errors: the message names the file or field and what was
    expected, so it is all a user needs to read."""


class ConfigError(NSMError, ValueError):
    """A config value is missing, inconsistent or out of range."""


class DataError(NSMError):
    """A dataset is missing, or does not match what the config or checkpoint expects."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset folder (or one of its files) does not exist."""


class DatasetExistsError(DataError, FileExistsError):
    """A dataset would be written over an existing folder without `dataset.overwrite=true`."""


def user_error(exc: BaseException) -> NSMError | None:
    """The NSMError behind `exc` (itself, or one it was raised from, e.g. by Hydra's
    instantiate), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, NSMError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
