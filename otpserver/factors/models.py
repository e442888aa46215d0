"""The JSON bodies of the second-factor routes: requests parsed strictly, responses documented.

Requests refuse unknown fields and wrong types (`BODY:INVALID`, 400). Response models are
what `openapi.json` shows and what the tests validate real answers against, so the two
cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from otpserver.factors import backup_codes


def _whole(value: object) -> object:
    """A JSON number with no fraction (`30.0`) as the integer it is: JSON Schema counts it as
    an integer, so callers may send it. Everything else is left for strict validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Whole = BeforeValidator(_whole)
"""Integral numbers sent as floats are integers; strings and booleans still are not."""

Subject = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$"),
    Field(description="The host's opaque user id: 1-128 printable ASCII characters."),
]
Blob = Annotated[
    str,
    StringConstraints(max_length=2048),
    Field(description="A sealed blob exactly as the server returned it (base64url)."),
]
CodeText = Annotated[
    str, StringConstraints(max_length=64), Field(description="What the user typed.")
]
Nonce = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[\x20-\x7e]+$"),
    Field(description="Copied into the signed result, to bind it to the host's login attempt."),
]
Label = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TotpEnrolRequest(_Request):
    """Start an enrolment: a new secret for the subject's authenticator app."""

    subject: Subject
    account: Label = Field(description="The account name the app shows, e.g. the email.")
    issuer: Label | None = Field(
        default=None, description="The service name the app shows (OTP_TOTP_ISSUER if absent)."
    )
    digits: Annotated[Literal[6, 8], Whole] = 6
    period: Annotated[Literal[30, 60], Whole] = 30
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = Field(
        default="SHA1", description="SHA1 is what every app supports."
    )


class TotpConfirmRequest(_Request):
    """Activate a pending enrolment with a code from the app."""

    subject: Subject
    pending: Blob
    code: CodeText


class TotpVerifyRequest(_Request):
    """Check a code against a stored enrolment."""

    subject: Subject
    enrolment: Blob
    code: CodeText
    nonce: Nonce | None = None


class BackupCodesRequest(_Request):
    """Generate a new set of backup codes; older sets stop working."""

    subject: Subject
    count: Annotated[int, Field(ge=backup_codes.MIN_COUNT, le=backup_codes.MAX_COUNT), Whole] = (
        backup_codes.DEFAULT_COUNT
    )


class BackupCodeRedeemRequest(_Request):
    """Spend one backup code of a set."""

    subject: Subject
    set: Blob
    code: CodeText
    nonce: Nonce | None = None


Generation = Annotated[
    int,
    Field(
        ge=0,
        le=2**53 - 1,
        description="The host's device generation for the user; raising it revokes older tokens.",
    ),
    Whole,
]


class DeviceTrustRequest(_Request):
    """Trust the browser the user just completed a second factor on."""

    subject: Subject
    days: Annotated[int, Field(ge=1, le=30), Whole] | None = Field(
        default=None, description="At most OTP_TRUSTED_DEVICE_DAYS (the default)."
    )
    generation: Generation = 0


class DeviceCheckRequest(_Request):
    """Check the device token the browser presented."""

    subject: Subject
    device: Blob
    generation: Generation | None = None


class DeviceRevokeRequest(_Request):
    """Revoke one device of the subject, or all of them when `deviceId` is absent."""

    subject: Subject
    # Exactly the ids trust issues (16 random bytes, base64url, so the last character's
    # padding bits are zero): a mistyped id is refused rather than "revoked" for nothing.
    deviceId: (
        Annotated[
            str,
            StringConstraints(pattern=r"^[A-Za-z0-9_-]{21}[AQgw]$"),
            Field(description="A `deviceId` from /v1/devices/trust."),
        ]
        | None
    ) = None


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TotpEnrolment(_Response):
    """A pending enrolment: show `qr` (or `secret`) once, keep `pending` for the confirmation."""

    pending: str = Field(description="Sealed pending enrolment, valid 10 minutes.")
    uri: str = Field(description="The otpauth:// URI the QR code carries.")
    secret: str = Field(description="The secret in base32, for typing into an app.")
    qr: str = Field(description="An SVG document of the QR code, drawn by this server.")


class TotpConfirmation(_Response):
    """`approved` with the sealed enrolment to store, or why not."""

    status: Literal["approved", "incorrect", "locked", "expired", "invalid"]
    enrolment: str | None = Field(default=None, description="Store on the user's row.")
    enrolmentId: str | None = None
    retryAfter: int | None = Field(default=None, description="Seconds, when `locked`.")


class TotpVerification(_Response):
    """`approved` with a signed result, or why not."""

    status: Literal["approved", "incorrect", "locked", "invalid"]
    result: str | None = Field(default=None, description="Signed result (JWS), on approval.")
    enrolmentId: str | None = None
    enrolment: str | None = Field(
        default=None, description="Re-sealed enrolment: replace the stored one when present."
    )
    retryAfter: int | None = Field(default=None, description="Seconds, when `locked`.")


class BackupCodeSet(_Response):
    """A new set: show `codes` once, store `set`."""

    codes: list[str] = Field(description="The codes, `XXXX-XXXX-XXXX-XXXX`; shown once.")
    set: str = Field(description="Sealed set (salted slow hashes and used bits) to store.")
    setId: str


class BackupCodeRedemption(_Response):
    """`approved` with what remains and a signed result, or why not."""

    status: Literal["approved", "incorrect", "locked", "expired", "invalid"]
    remaining: int | None = Field(default=None, description="Unused codes left, on approval.")
    set: str | None = Field(
        default=None, description="The set to store in place of the old one, when present."
    )
    setId: str | None = None
    result: str | None = Field(default=None, description="Signed result (JWS), on approval.")
    retryAfter: int | None = Field(default=None, description="Seconds, when `locked`.")


class DeviceTrusted(_Response):
    """A device token for the host's own HttpOnly cookie."""

    device: str = Field(description="Sealed device token.")
    deviceId: str
    expires: str = Field(description="When the trust ends (ISO-8601 UTC).")


class DeviceCheck(_Response):
    """Trusted (with the device and its expiry), or why not."""

    trusted: bool
    deviceId: str | None = None
    expires: str | None = None
    reason: Literal["expired", "revoked", "invalid"] | None = None
    device: str | None = Field(
        default=None, description="Re-sealed token: replace the cookie's value when present."
    )


class DeviceRevoked(_Response):
    """What was revoked: a `deviceId`, or `all`."""

    revoked: str


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    TotpEnrolment,
    TotpConfirmation,
    TotpVerification,
    BackupCodeSet,
    BackupCodeRedemption,
    DeviceTrusted,
    DeviceCheck,
    DeviceRevoked,
)
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    TotpEnrolRequest,
    TotpConfirmRequest,
    TotpVerifyRequest,
    BackupCodesRequest,
    BackupCodeRedeemRequest,
    DeviceTrustRequest,
    DeviceCheckRequest,
    DeviceRevokeRequest,
)
