"""What every settings section shares: the base struct and the constrained number types."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["NonNegativeInt", "PositiveFloat", "PositiveInt", "UnitFloat", "_Section"]

PositiveInt = Annotated[int, Meta(gt=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
UnitFloat = Annotated[float, Meta(ge=0.0, le=1.0)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base for config sections: unknown keys are errors, instances are immutable."""
