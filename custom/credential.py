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

import re
from typing import Annotated

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from otpserver.otp.credentials import Credential, CredentialBody

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit for a forward path."""
MAX_PHONE_INPUT_LENGTH = 32
"""E.164 numbers have at most 15 digits; leave room for spaces a user typed."""

_PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
)
"""Lower-case ASCII addresses of the everyday shape: dot-atom local part, LDH labels, an
alphabetic top-level domain."""
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_USE_SUFFIXES = tuple("." + name for name in SPECIAL_USE_DOMAIN_NAMES)
"""email-validator's special-use names (`test`, `local`, ...) as read at import, in the
forms one `in` and one `endswith` can check: a tenth of the cost of a loop over the list.
If you edit `email_validator.SPECIAL_USE_DOMAIN_NAMES`, do it before this module loads."""


def plain_email(lowered: str) -> bool:
    """True for an everyday lower-case ASCII address that `validate_email` is sure to accept
    unchanged, so the validator (about a fifth of a create's CPU time) can be skipped.

    It answers True only inside a strict subset of what the validator accepts, and False
    for everything else (which then goes to the validator, so nothing valid is lost):
    internationalized addresses, `--` in the domain (Punycode and its look-alikes),
    special-use domains, and anything near a length limit. `tests/test_credential_email.py`
    checks the subset against the validator on generated addresses; if you edit this,
    keep that test green or simply delete the function and its call.
    """
    match = _PLAIN_EMAIL.fullmatch(lowered)
    if match is None or len(lowered) > MAX_EMAIL_LENGTH:
        return False
    local, domain = match["local"], match["domain"]
    return (
        len(local) <= 64
        and len(domain) <= 253
        and "--" not in domain
        and domain not in _SPECIAL_USE
        and not domain.endswith(_SPECIAL_USE_SUFFIXES)
    )


def normalize_email(value: str) -> str:
    """Validate syntax (no DNS lookups) and lower-case the whole address.

    Lower-casing can change an address (`İ` becomes two characters, so a valid address can
    grow past the length limits), so the lower-cased form must validate again, as itself:
    what the server keeps and sends to is always an address the validator accepts.
    """
    if value.isascii():
        # ASCII lower-casing only swaps letters for letters, so the address and its lower
        # case are valid alike (the `isascii` comes first: `K`, the Kelvin sign, lowers to k).
        lowered = value.lower()
        if plain_email(lowered):
            return lowered
    try:
        lowered = validate_email(value, check_deliverability=False).normalized.lower()
        if lowered.isascii():
            # ASCII lower-casing keeps the length and swaps letters for letters, which are
            # valid wherever the capitals were, so the second pass could only agree: skip it.
            return lowered
        again = validate_email(lowered, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    if again != lowered:
        raise ValueError("the address changes when it is normalized again")
    return lowered


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


# `format` and `pattern` below only document the rules in openapi.json; the validators enforce
# them (and more: a phone number must also be a real number per libphonenumber).
Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=MAX_EMAIL_LENGTH,
        description="An email address; internationalized ones are allowed, quoted local parts, "
        "IP literals and special-use domains (.test, .local, ...) are not. Lower-cased.",
        json_schema_extra={"format": "email"},
    ),
    AfterValidator(normalize_email),
]
Phone = Annotated[
    str,
    Field(
        min_length=2,
        max_length=MAX_PHONE_INPUT_LENGTH,
        description="An international number: + and the country code (spaces allowed), valid "
        "per libphonenumber. Normalized to E.164.",
        json_schema_extra={"format": "phone", "pattern": r"^\+"},
    ),
    AfterValidator(normalize_phone),
]
Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$", max_length=35)]


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
        # The validator above guarantees one of them; with -O the next line simply returns it.
        assert self.phone is not None  # noqa: S101  # nosec B101
        return Credential(channel="phone", address=self.phone)

    def requested_locale(self) -> str | None:
        return self.locale
