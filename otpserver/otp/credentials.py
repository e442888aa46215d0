"""What a code is sent to: the validated credential, and the base of the schema that yields it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Credential:
    """A validated, normalized address a code can be sent to.

    `channel` names the delivery route (`"email"`, `"phone"`, or one a forker adds);
    `address` is the normalized value (lower-case email, E.164 phone number). Two requests
    for the same person must produce equal credentials, because limits are keyed on them.
    """

    channel: str
    address: str


class CredentialBody(BaseModel):
    """Base of the create-request schema: a pydantic model that yields one credential.

    Subclasses declare the JSON fields (refusing unknown keys) and implement `credential`.
    `locale` is optional everywhere so the core can pass it on to the sender.
    """

    def credential(self) -> Credential:
        """Return the validated credential this body names."""
        raise NotImplementedError

    def requested_locale(self) -> str | None:
        """The language the client asked for explicitly, if the schema has such a field."""
        return None
