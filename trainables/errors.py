"""The user-facing error type and its "did you mean" helper: a leaf module that imports nothing of ours,
so every registry (models, inits, data) can raise it without importing the config that collects them."""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A user-facing mistake in a config, a sweep file or a command-line flag."""


class DataError(RuntimeError):
    """A data folder that is missing, empty or corrupt, or a download that failed."""


class DataMissing(DataError):
    """The data set is not in the folder and could not be downloaded (no network): nothing is corrupt."""


def suggest(name: str, valid) -> str:
    """' (did you mean "x"?)' for the closest valid name, or a list of the valid ones."""
    valid = sorted(map(str, valid))
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid: {', '.join(valid)})"
