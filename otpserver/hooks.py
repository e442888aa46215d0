"""Contracts between the core and the `custom/` hooks a forker edits.

The core depends only on these types. `custom/` supplies plain functions and small classes
that fit them, and mypy checks the fit at the one composition root (`otpserver.asgi`).
Stateful collaborators (stores, senders) are Protocols; stateless steps are callables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from otpserver.config import Settings
    from otpserver.limits import Counter, Decision, LimitPolicy
    from otpserver.policy import OtpPolicy


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


@dataclass(frozen=True, slots=True)
class OutgoingCode:
    """Everything a sender needs to deliver one code, and nothing it should not see.

    `origin_host` is the host name the browser used (for the `@host #code` autofill line);
    `locale` is the client's explicit choice and `accept_language` the raw header, so the
    sender can pick a template language; `ttl_seconds` is the code's lifetime.
    """

    credential: Credential
    code: str
    ttl_seconds: int
    origin_host: str
    locale: str | None = None
    accept_language: str | None = None
    is_resend: bool = False


class DeliveryError(Exception):
    """Raised by a sender when a code could not be handed to the provider.

    The core answers `SEND:FAILED` (502) and rolls the request back: no pending token, no
    consumed cookie ID, no counted resend. The message is logged, so it must never contain
    the code.
    """


@runtime_checkable
class Sender(Protocol):
    """Delivers codes. `development_only` senders are refused at start-up in production."""

    development_only: bool

    async def send(self, message: OutgoingCode) -> None:
        """Deliver `message` or raise `DeliveryError`."""
        ...


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    """What the final hook learns after a successful verify."""

    credential: Credential
    verified_at: float


FinalHook = Callable[[VerifiedCredential, "Request"], Awaitable["Response"]]
"""Runs exactly once per successful code; its response is the verify response."""

CodeGenerator = Callable[["OtpPolicy"], str]
"""Returns a fresh code drawn uniformly from the policy's alphabet with the policy's length."""


class IdStore(Protocol):
    """Single-use token-list IDs with a time to live.

    Every method is atomic with respect to concurrent callers and raises
    `otpserver.errors.StoreUnavailable` when the backend cannot be reached.
    """

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        """Record `list_id` as live for `ttl_seconds`; False if it was already live."""
        ...

    async def consume(self, list_id: bytes) -> bool:
        """Remove `list_id`; True for exactly one caller while it was live."""
        ...

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        """Consume `old_id` and, only if that succeeded, add `new_id`, in one atomic step."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class KeyStore(Protocol):
    """Wrapped key-encryption keys by numeric id; the store never sees a plaintext key."""

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        """Store `candidate` under `key_id` unless a value exists; return the stored value.

        Atomic: instances racing on an empty store all get the same winner back.
        """
        ...

    async def get(self, key_id: int) -> bytes | None:
        """The wrapped key stored under `key_id`, or None once removed or expired."""
        ...

    async def delete(self, key_id: int) -> None:
        """Remove a key, e.g. to revoke every cookie it protects."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class CounterStore(Protocol):
    """Abuse-limit counters with fixed windows, checked and charged all or nothing.

    `hit` is one atomic step, also across processes sharing the backend: with concurrent
    callers, no counter ever goes past its limit. Keys expire by themselves once their
    window ends. Every method raises `otpserver.errors.StoreUnavailable` when the backend
    cannot answer, so the server fails closed with 503.
    """

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        """Charge every counter if each has room (`otpserver.limits.decide`), else none."""
        ...

    async def reset(self, keys: Sequence[bytes]) -> None:
        """Forget the counts under `keys` (a correct code clears its credential's failures)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class Hooks:
    """Everything the core needs from `custom/`, assembled in `custom/__init__.py`."""

    credential_body: type[CredentialBody]
    policy: OtpPolicy
    generate_code: CodeGenerator
    make_sender: Callable[[Settings], Sender]
    final: FinalHook
    make_id_store: Callable[[Settings], IdStore]
    make_key_store: Callable[[Settings], KeyStore]
    limits: LimitPolicy
    make_counter_store: Callable[[Settings], CounterStore]
