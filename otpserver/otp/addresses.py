"""Email addresses and phone numbers: validate, normalise, and bound their lengths.

Pure functions (no DNS, no I/O) that every credential schema can share, and the pydantic
field types built on them: `EmailAddress` (lower-cased, syntax-checked by email-validator)
and `PhoneNumber` (E.164, checked by libphonenumber). Pending entries and abuse limits are
keyed on the normalised form, so two spellings of one mailbox or number give one address.
"""

from __future__ import annotations

import re
from typing import Annotated

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

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
Whoever edits `email_validator.SPECIAL_USE_DOMAIN_NAMES` must do it before this module loads."""


def plain_email(lowered: str) -> bool:
    """True for an everyday lower-case ASCII address that `validate_email` is sure to accept
    unchanged, so the validator (about a fifth of a create's CPU time) can be skipped.

    It answers True only inside a strict subset of what the validator accepts, and False
    for everything else (which then goes to the validator, so nothing valid is lost):
    internationalized addresses, `--` in the domain (Punycode and its look-alikes),
    special-use domains, and anything near a length limit. `tests/test_credential_email.py`
    checks the subset against the validator on generated addresses.
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


ENCODED_WORD_START = "=?"
"""How every RFC 2047 encoded word begins (`=?charset?q?...?=`)."""


def has_encoded_word(address: str) -> bool:
    """True when the local part could hold an RFC 2047 encoded word.

    Python's email library decodes encoded words in an address's local part and, before
    3.11.10 / 3.12.5 (CVE-2024-6923), writes the decoded text back raw, so
    `=?utf-8?q?=0d=0abcc=3a_...?=@example.com` becomes a header line of the client's own in
    mail from the operator's domain. `=` and `?` are legal in a dot-atom, so the validator
    accepts such parts; nobody's real mailbox needs the pair, so it is refused outright,
    whatever the interpreter's patch level. (Domains cannot hold either character.)
    """
    return ENCODED_WORD_START in address.rpartition("@")[0]


def normalize_email(value: str) -> str:
    """Validate an address's syntax (no DNS lookups) and return it lower-cased entirely.

    Raises `ValueError` (which pydantic reports as a validation error) when it is not an
    address the server accepts: quoted local parts, local parts holding `=?` (the start of
    an encoded word, see `has_encoded_word`), IP-literal and special-use domains are
    refused. Lower-casing can change an address (`İ` becomes two characters, so a valid
    address can grow past the length limits), so the lower-cased form must validate again,
    as itself: what the server keeps and sends to is always an address the validator accepts.
    """
    if has_encoded_word(value):
        raise ValueError("the local part must not contain =? (an encoded word)")
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


DOTLESS_DOMAINS = frozenset({"gmail.com"})
"""Domains whose provider ignores dots in local parts (`a.da@` and `ada@` are one inbox)."""
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
"""Domains that deliver to another domain's mailboxes."""


def canonical_mailbox(address: str) -> str:
    """The inbox a normalised address delivers to, as far as spelling can tell: without a
    `+tag`, without dots at Gmail, and with googlemail.com as gmail.com.

    Abuse limits are keyed on this, so `ada+1@`, `a.da@` and `ada@googlemail.com` share one
    send allowance and one failure count; the code still goes to the address as written.
    It errs only toward merging: two people whose addresses differ by a `+tag` at a provider
    without sub-addressing share their limits.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    domain = DOMAIN_ALIASES.get(domain, domain)
    tagless = local.partition("+")[0]
    if tagless:
        local = tagless
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def normalize_phone(value: str) -> str:
    """Parse an international number (`+` and the country code) and return its E.164 form.

    Raises `ValueError` when it has no leading `+`, does not parse, or is not a valid number
    per libphonenumber.
    """
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
EmailAddress = Annotated[
    str,
    Field(
        min_length=3,
        max_length=MAX_EMAIL_LENGTH,
        description="An email address; internationalized ones are allowed, quoted local parts, "
        "local parts containing =?, IP literals and special-use domains (.test, .local, ...) "
        "are not. Lower-cased.",
        json_schema_extra={"format": "email"},
    ),
    AfterValidator(normalize_email),
]
"""A pydantic field type: an email address, length-bounded, returned by `normalize_email`."""

PhoneNumber = Annotated[
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
"""A pydantic field type: a phone number, length-bounded, returned by `normalize_phone`."""
