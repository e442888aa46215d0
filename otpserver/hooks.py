"""Contracts between the core and the `custom/` hooks a forker edits.

The core depends only on these types. `custom/` supplies plain functions and small classes
that fit them, and mypy checks the fit at the one composition root (`otpserver.asgi`).
Stateful collaborators (stores, senders) are Protocols; stateless steps are callables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from starlette.responses import JSONResponse as StarletteJSONResponse

from otpserver.delivery.message import Sender
from otpserver.otp.credentials import Credential, CredentialBody
from otpserver.otp.policy import CodeGenerator, OtpPolicy
from otpserver.stores.base import CounterStore, IdStore, KeyStore, MarkerStore

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from otpserver.limits.rules import LimitPolicy
    from otpserver.settings.environment import Settings


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    """What the final hook learns after a successful verify."""

    credential: Credential
    verified_at: float
    result: str | None = None
    """The signed result of this verification (SPEC §11): a compact JWS the page can hand
    to its own backend, which checks it against `/.well-known/jwks.json`."""
    via_link: bool = False
    """True when the code came through its emailed sign-in link (a click in this browser,
    or approval by number from another device) rather than typed; the result then names
    `otp_method` `link`."""


class JSONResponse(StarletteJSONResponse):
    """Starlette's `JSONResponse`, rendered by pydantic-core: the same compact UTF-8 JSON
    (byte for byte for strings, integers, booleans, null, lists and objects), in about a
    third of the time, on the request that approves a code. It writes a float that is not
    a number as null, where Starlette's refuses it."""

    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")


FinalHook = Callable[[VerifiedCredential, "Request"], Awaitable["Response"]]
"""Runs exactly once per successful code; its response is the verify response."""


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
    make_marker_store: Callable[[Settings], MarkerStore]
