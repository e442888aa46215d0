"""SMS through a customer's own gateway: one signed JSON POST per message.

The request body is JSON:
`{"to", "text", "code", "channel", "locale", "ttlSeconds"}` (`text` is the rendered message,
ending with the autofill line; `code` is there for gateways that render their own text).
Two headers authenticate it:

    X-Otp-Timestamp: <unix seconds>
    X-Otp-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

A gateway checks them with `verify_webhook_signature` (or the same three lines in its own
language) on the raw body bytes, before parsing the JSON, and refuses anything older than a
few minutes so a captured request cannot be replayed later. Any 2xx answer means accepted;
anything else is a failed send. A retry after a network error repeats the exact request,
signature included, so a gateway can deduplicate on `X-Otp-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from otpserver.delivery.http import make_client, post_with_retries
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.delivery.templates import Templates
from otpserver.settings.delivery import WebhookConfig

SIGNATURE_VERSION = "v1"


def sign_webhook(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The `X-Otp-Signature` value for `body` sent at `timestamp`."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_webhook_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_seconds: float = 300,
) -> bool:
    """True if `signature` signs `body` at `timestamp` and the timestamp is within tolerance.

    Pass the `X-Otp-Timestamp` and `X-Otp-Signature` headers as received, the raw body, and
    the current Unix time. The comparison takes constant time, so response timing tells an
    attacker nothing about how close a forgery came.
    """
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    expected = sign_webhook(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))


class WebhookSmsSender:
    """Posts each text message, signed, to the configured URL."""

    development_only = False

    def __init__(
        self,
        config: WebhookConfig,
        templates: Templates,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 1,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._templates = templates
        self._retries = retries
        self._now = now
        self._client = make_client(timeout_seconds)

    async def send(self, message: OutgoingCode) -> None:
        """Post the signed message, or raise `DeliveryError` without the code in it."""
        sms = self._templates.sms(message)
        body = json.dumps(
            {
                "to": message.credential.address,
                "text": sms.text,
                "code": message.code,
                "channel": message.credential.channel,
                "locale": sms.language,
                "ttlSeconds": message.ttl_seconds,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        timestamp = str(int(self._now()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Otp-Timestamp": timestamp,
            "X-Otp-Signature": sign_webhook(self._config.secret, timestamp, body),
        }
        try:
            response = await post_with_retries(
                self._client, self._config.url, retries=self._retries, content=body, headers=headers
            )
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"the SMS webhook could not be reached ({type(exc).__name__})"
            ) from None
        if not response.is_success:
            raise DeliveryError(f"the SMS webhook answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()
