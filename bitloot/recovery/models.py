"""What clients send to and get from `POST /orders/recover`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class RecoverIn(BaseModel):
    """`POST /orders/recover` body: the address the orders were placed with (any case)."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(description="The email address the orders were placed with.")


class RecoverAcceptedOut(BaseModel):
    """`POST /orders/recover` response: the same for every address, known or not."""

    status: Literal["accepted"]
    detail: str
