"""Reading request bodies: JSON or a clear 400/413/422, never a 500."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bitloot.text import MAX_JSON_DEPTH, nests_too_deeply
from bitloot.web.errors import BadRequest, UnprocessableEntity

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body parsed as `model`: 400 when it is not JSON, 422 listing each invalid field."""
    raw = await request.read()  # over client_max_size: aiohttp raises 413 here
    if nests_too_deeply(raw):
        raise too_deep()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: brackets that never pair up, opened a thousand deep.
        raise BadRequest("The body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnprocessableEntity.from_validation_error(exc) from None


def too_deep() -> BadRequest:
    """The 400 for a JSON body nested past `MAX_JSON_DEPTH` (see `nests_too_deeply`)."""
    return BadRequest(f"The body nests arrays or objects more than {MAX_JSON_DEPTH} deep.")
