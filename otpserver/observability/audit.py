"""Audit events: one JSON object per security outcome, to the log and optionally a webhook.

Call `emit` where the outcome happens, with the credential it concerns and a few plain
fields:

    audit.emit("otp.verified", credential=entry.credential, method="code")

The event never holds the credential in clear: it carries `channel`, an HMAC of the
address under a key derived from the master key (equal for equal addresses, so events can
be joined, and useless to anyone without the key), and a masked form for people
(`a***@example.com`, `+4***89`). Fields named like a secret are refused outright, so a
code, token, cookie or key can never be passed by mistake.

Event types (SPEC §16): otp.sent, otp.send_failed, otp.verified, otp.failed, otp.locked,
otp.rate_limited, totp.enrolled, totp.verified, backup_code.redeemed,
backup_codes.generated, device.trusted, device.revoked, key.rotated, store.unavailable.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import time
from typing import Protocol

from otpserver.encoding import b64url
from otpserver.observability.logs import REQUEST_ID
from otpserver.observability.webhooks import WebhookSender
from otpserver.settings.operations import OperationsConfig

log = logging.getLogger("otpserver.audit")

EVENT_TYPES = frozenset(
    {
        "otp.sent",
        "otp.send_failed",
        "otp.verified",
        "otp.failed",
        "otp.locked",
        "otp.rate_limited",
        "totp.enrolled",
        "totp.verified",
        "backup_code.redeemed",
        "backup_codes.generated",
        "device.trusted",
        "device.revoked",
        "key.rotated",
        "store.unavailable",
    }
)

FORBIDDEN_FIELDS = frozenset(
    {"code", "otp", "token", "cookie", "secret", "key", "password", "challenge", "address"}
)
"""Field names an event may never carry: what they would hold must never leave the server."""

Field = str | int | float | bool | None


class Addressed(Protocol):
    """What an event needs of a credential (`otpserver.otp.credentials.Credential` fits)."""

    @property
    def channel(self) -> str: ...
    @property
    def address(self) -> str: ...


def mask(address: str) -> str:
    """A form a person can recognise and nobody can use: `a***@example.com`, `+4***89`."""
    local, at, domain = address.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    if address.startswith("+") and len(address) > 6:
        return f"{address[:2]}***{address[-2:]}"
    return f"{address[:1]}***"


@functools.lru_cache(maxsize=4)
def _timestamp(second: int) -> str:
    """RFC 3339 UTC time of `second`: formatted once for all the events of that second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


class AuditTrail:
    """Writes events to the log and, when configured, queues them for the webhook."""

    def __init__(self, credential_key: bytes, webhook: WebhookSender | None = None) -> None:
        # Keyed once: each pseudonym starts from a copy instead of deriving the key's pads.
        self._credential_mac = hmac.new(credential_key, digestmod=hashlib.sha256)
        self._webhook = webhook

    def credential_hmac(self, credential: Addressed) -> str:
        """The stable pseudonym of a credential in events (base64url, 22 characters)."""
        message = f"{credential.channel}:{credential.address}".encode()
        keyed = self._credential_mac.copy()
        keyed.update(message)
        return b64url(keyed.digest()[:16])

    def emit(
        self, event_type: str, *, credential: Addressed | None = None, **fields: Field
    ) -> None:
        """Record one outcome. Raises ValueError for an unknown type or a forbidden field:
        both are mistakes in the code, caught by its tests, never by a client."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown audit event type {event_type!r}")
        refused = FORBIDDEN_FIELDS.intersection(fields)
        if refused:
            raise ValueError(f"audit events never carry {sorted(refused)}")
        data: dict[str, object] = dict(fields)
        if credential is not None:
            data["channel"] = credential.channel
            data["credential_hmac"] = self.credential_hmac(credential)
            data["credential_masked"] = mask(credential.address)
        request_id = REQUEST_ID.get()
        if request_id is not None:
            data["request_id"] = request_id
        # 15 bytes: 20 characters, no padding to strip.
        message_id = "msg_" + b64url(os.urandom(15))
        document = {
            "id": message_id,
            "type": event_type,
            "timestamp": _timestamp(int(time.time())),
            "data": data,
        }
        log.info("audit %s", event_type, extra={"event": document})
        if self._webhook is not None:
            body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
            self._webhook.submit(message_id, body)

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Deliver the queued webhook events (bounded), then stop sending."""
        if self._webhook is not None:
            self._webhook.close(timeout_seconds)


_trail = AuditTrail(os.urandom(32))


def install(trail: AuditTrail) -> AuditTrail:
    """Make `trail` the one `emit` writes to (the application does this when it is built);
    returns the one it replaces."""
    # One trail per process, like its log handlers.
    global _trail
    previous, _trail = _trail, trail
    return previous


def install_for(operations: OperationsConfig, credential_key: bytes) -> AuditTrail:
    """Install the trail the settings describe (log only, or log and webhook); return it."""
    webhook = None
    if operations.events_webhook_url is not None and operations.events_webhook_key is not None:
        webhook = WebhookSender(operations.events_webhook_url, operations.events_webhook_key)
    trail = AuditTrail(credential_key, webhook)
    install(trail)
    return trail


def emit(event_type: str, *, credential: Addressed | None = None, **fields: Field) -> None:
    """Record one security outcome on the installed trail (see the module docstring)."""
    _trail.emit(event_type, credential=credential, **fields)
