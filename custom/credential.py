"""Edit this file to decide what a client may ask a code for: the body of `POST /api/otp/create`.

Contract
    `CreateRequest` is a pydantic model. The core validates the JSON body with it (strictly:
    unknown keys and wrong types are refused with 400 `CREDENTIAL:INVALID`), then calls
    `credential()` to learn where the code goes. Return a `Credential(channel, address)`:
    the channel picks the sender in `custom/send.py`; the address must be normalized, because
    pending entries and abuse limits are keyed on it (two spellings of one mailbox must give
    one address).

What the core guarantees before calling
    The body is at most `OTP_MAX_BODY_BYTES`, is a JSON object, and the request passed the
    origin checks. Nothing has been sent or stored yet.

What to raise
    Nothing: express every rule as a pydantic constraint or validator (raise `ValueError`
    inside a validator); the core turns any validation failure into `CREDENTIAL:INVALID`.

Keep lengths bounded: the whole cookie must stay under 4096 bytes with
`max_credentials` entries of the longest address you allow.

Trade-offs of the default
    One of `email` or `phone`. Emails are lower-cased entirely (mail providers treat local
    parts case-insensitively in practice); quoted local parts and IP-literal domains are
    refused. Phones must be E.164 (`+` and country code) and valid per libphonenumber.
    To accept only email, delete the `phone` field and its branch in `credential()`.
"""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from otpserver.hooks import Credential, CredentialBody

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit for a forward path."""
MAX_PHONE_INPUT_LENGTH = 32
"""E.164 numbers have at most 15 digits; leave room for spaces a user typed."""


def normalize_email(value: str) -> str:
    """Validate syntax (no DNS lookups) and lower-case the whole address."""
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    return result.normalized.lower()


def normalize_phone(value: str) -> str:
    """Parse an international number and return it in E.164 form."""
    if not value.startswith("+"):
        raise ValueError("phone numbers must start with + and the country code")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


Email = Annotated[
    str, Field(min_length=3, max_length=MAX_EMAIL_LENGTH), AfterValidator(normalize_email)
]
Phone = Annotated[
    str, Field(min_length=2, max_length=MAX_PHONE_INPUT_LENGTH), AfterValidator(normalize_phone)
]
Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$", max_length=35)]


class CreateRequest(CredentialBody):
    """`{"email": "ada@example.com"}` or `{"phone": "+14155550100"}`, with an optional `locale`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    email: Email | None = None
    phone: Phone | None = None
    locale: Locale | None = None

    @model_validator(mode="after")
    def exactly_one_credential(self) -> CreateRequest:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email or phone")
        return self

    def credential(self) -> Credential:
        if self.email is not None:
            return Credential(channel="email", address=self.email)
        assert self.phone is not None  # noqa: S101 -- the validator above guarantees one of them
        return Credential(channel="phone", address=self.phone)

    def requested_locale(self) -> str | None:
        return self.locale
