"""Edit this file to decide what a client may ask a code for: the body of `POST /api/otp/create`.

Contract
    `CreateRequest` is a pydantic model. The core validates the JSON body with it (strictly:
    unknown keys and wrong types are refused with 400 `CREDENTIAL:INVALID`), then calls
    `credential()` to learn where the code goes. Return a `Credential(channel, address)`:
    the channel picks the sender in `custom/send.py`; the address must be normalized, because
    pending entries and abuse limits are keyed on it (two spellings of one mailbox must give
    one address). The field types `EmailAddress` and `PhoneNumber` from `otpserver` do that
    for you: a lower-cased, syntax-checked address, or an E.164 number libphonenumber accepts.

What the core guarantees before calling
    The body is at most `OTP_MAX_BODY_BYTES`, is a JSON object, and the request passed the
    origin checks. Nothing has been sent or stored yet.

What to raise
    Nothing: express every rule as a pydantic constraint or validator (raise `ValueError`
    inside a validator); the core turns any validation failure into `CREDENTIAL:INVALID`.

Keep lengths bounded: the whole cookie must stay under 4096 bytes with `max_credentials`
entries of the longest address you allow (`EmailAddress` and `PhoneNumber` are bounded).

Examples
    To accept only email, delete the `phone` field and its branch in `credential()` (and
    the `oneOf` entry). To accept only addresses at your own domain, add to the class:

        @field_validator("email")
        @classmethod
        def at_our_domain(cls, email: str | None) -> str | None:
            if email is not None and not email.endswith("@example.com"):
                raise ValueError("use your example.com address")
            return email

Trade-offs of the default
    One of `email` or `phone`. Emails are lower-cased entirely (mail providers treat local
    parts case-insensitively in practice); quoted local parts and IP-literal domains are
    refused. Phones must be E.164 (`+` and country code) and valid per libphonenumber.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from otpserver import Credential, CredentialBody, EmailAddress, PhoneNumber

Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$", max_length=35)]
"""A BCP 47 language tag such as `en` or `pt-BR`; it picks the message template."""


class CreateRequest(CredentialBody):
    """`{"email": "ada@example.com"}` or `{"phone": "+14155550100"}`, with an optional `locale`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # Documents `exactly_one_credential` in openapi.json: one of the two, as a string.
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("email", "phone")
            ]
        },
    )

    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    locale: Locale | None = None

    @model_validator(mode="after")
    def exactly_one_credential(self) -> CreateRequest:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email or phone")
        return self

    def credential(self) -> Credential:
        if self.email is not None:
            return Credential(channel="email", address=self.email)
        # The validator above guarantees one of them; with -O the next line simply returns it.
        assert self.phone is not None  # noqa: S101  # nosec B101
        return Credential(channel="phone", address=self.phone)

    def requested_locale(self) -> str | None:
        return self.locale
