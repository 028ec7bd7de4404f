"""The base of every config section: unknown keys are errors, values are frozen and defaults validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: extra keys forbidden, immutable, defaults validated like user values."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
