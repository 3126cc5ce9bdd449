"""What an error answer looks like, for the OpenAPI document: the RFC 9457 problem models
(the shape `errors.problem_response` writes) and the problem descriptions many operations
share, for their contracts (`contract.operation(problems=...)`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

UNAUTHORIZED = "No bearer token, or one that fails verification."
FORBIDDEN = "A valid token without the admin role."
BAD_JSON = "The body is not JSON."
TOO_LARGE = "The body is over the configured limit."
INVALID = "Invalid input; `errors` lists each problem."
RATE_LIMITED = "Over the rate limit; retry after `Retry-After` seconds."


class FieldError(BaseModel):
    """One invalid input: where it is (`["body", "items", 0, "qty"]`) and which rule failed."""

    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error answer.

    `type` is stable per kind of problem; `detail` is for people. Some problems carry more
    members (`allowed` on 405, `maxBytes` on 413, the order's statuses on an admin 409).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(default="", description="The request path.")
    requestId: str | None = Field(
        default=None, description="The `X-Request-Id` of the request; quote it when reporting."
    )


class ValidationProblem(Problem):
    """A 422: every invalid input at once, never the input values themselves."""

    errors: list[FieldError]


class RetryableProblem(Problem):
    """A 429 or 502: how long to wait before retrying (also the `Retry-After` header)."""

    retryAfter: int = Field(ge=0, description="Seconds to wait before retrying.")


PROBLEM_MODELS: tuple[type[Problem], ...] = (Problem, ValidationProblem, RetryableProblem)


def problem_model(status: int) -> type[Problem]:
    """The problem model of an error answer with `status`."""
    if status == 422:
        return ValidationProblem
    if status in (429, 502):
        return RetryableProblem
    return Problem
