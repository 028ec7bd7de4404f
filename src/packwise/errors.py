"""Errors a user can cause. Each says what is wrong and what to do, in one line.

The CLI prints them without a traceback; anything else escaping is a bug.
"""

from __future__ import annotations


class PackwiseError(Exception):
    """Base of every error Packwise raises on purpose."""


class ConfigError(PackwiseError):
    """The configuration (file, trigger or CLI override) is invalid."""


class DataValidationError(PackwiseError):
    """A label snapshot or inventory is unfit for training or scoring."""


class RegistryError(PackwiseError):
    """A registry operation cannot be carried out (unknown version, illegal transition)."""


class ModelNotFoundError(RegistryError):
    """No usable model exists for a package type."""


class WarehouseError(PackwiseError):
    """The warehouse query or load failed in a way the user can fix."""


class InjectedFault(PackwiseError):  # noqa: N818 - it is a fault, not an error, by design
    """Raised on purpose by a fault-injection drill (PACKWISE_FAIL_TASK)."""


def first_line(err: BaseException, limit: int = 400) -> str:
    """The first line of an error's message, whitespace collapsed and at most `limit` characters.

    Library errors (DuckDB, MLflow, botocore) put the cause first and context lines after it; a
    one-line Packwise error quotes just that. An empty message gives the exception's type name.
    """
    lines = [line for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
