"""Pydantic models of every JSON body the API returns, for `openapi.json` and its tests.

Handlers build plain dicts for speed; tests validate real responses against these models,
so a drift between the two fails the suite.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from otpserver.errors import ERROR_CLASSES

IsoInstant = str
"""`2026-11-23T06:30:00Z`: ISO-8601 UTC in whole seconds."""

ERROR_CODES: list[JsonValue] = [cls.code for cls in ERROR_CLASSES]


class TokenState(BaseModel):
    """The current pending credential of a cookie, as create and resend return it."""

    model_config = ConfigDict(extra="forbid")

    credential: str = Field(description="The normalized address the code was sent to.")
    channel: str = Field(description="Delivery channel: email or phone.")
    sent: bool = Field(description="False when the credential was already pending (no new code).")
    expires: IsoInstant = Field(description="When the current code stops working.")
    resendBlock: IsoInstant | None = Field(
        description="When a resend becomes allowed; null when no resend is left."
    )
    otpBlock: IsoInstant | None = Field(
        description="End of a temporary verify block after a wrong code; null when none."
    )
    attemptsLeft: int = Field(ge=0, description="Wrong codes still allowed.")
    resendsLeft: int = Field(ge=0, description="Resends still allowed.")
    pending: int = Field(ge=1, description="Live pending credentials in this cookie.")


class LinkStatus(TokenState):
    """A pending sign-in as `POST /api/otp/status` shows it to the first tab (SPEC §18)."""

    status: Literal["pending"]
    match: str | None = Field(
        pattern="^[0-9]{2}$",
        description="The number to type on another device; null without OTP_LINK_CROSS_DEVICE.",
    )
    approval: Literal["waiting", "ended"] | None = Field(
        description="`ended` after two wrong numbers; null without OTP_LINK_CROSS_DEVICE."
    )


class Verified(BaseModel):
    """The default final hook's answer (custom/final.py); forks may return anything."""

    verified: Literal[True]
    credential: str
    channel: str
    result: str | None = Field(
        description="The signed result (SPEC §11): a compact JWS (EdDSA, typ otp-result+jwt) "
        "for the page to hand to its backend, which verifies it against /.well-known/jwks.json."
    )


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ErrorBody(BaseModel):
    """Every error: a stable code, a human message, and fields that tell the client what next."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(json_schema_extra={"enum": ERROR_CODES})
    message: str
    attemptsLeft: int | None = Field(default=None, ge=0)
    otpBlock: IsoInstant | None = None
    resendBlock: IsoInstant | None = None
    retryAfter: int | None = Field(default=None, ge=0)
    maxCredentials: int | None = Field(default=None, ge=1)
    fields: list[str] | None = None
