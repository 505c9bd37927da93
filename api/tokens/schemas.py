"""What the token endpoint answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.openapi import example


class TokenOut(BaseModel):
    model_config = example(
        {"access_token": "eyJhbGciOiJIUzI1NiIs…", "token_type": "bearer", "expires_in": 3600}
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the token expires.")
