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
