"""Parse untrusted input into a model, failing with one field-naming error."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchcore.errors import validation_failed_from

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed_from(exc) from None
