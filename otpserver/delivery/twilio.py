"""SMS through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`)."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

import httpx

from otpserver.delivery.http import make_client, post_with_retries
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.delivery.templates import Templates
from otpserver.settings.delivery import TwilioConfig

logger = logging.getLogger(__name__)

_MAX_LOGGED_CHARS = 300


class TwilioSmsSender:
    """Posts each text message to Twilio with the account's basic auth."""

    development_only = False

    def __init__(
        self,
        config: TwilioConfig,
        templates: Templates,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 1,
    ) -> None:
        self._config = config
        self._templates = templates
        self._retries = retries
        self._url = (
            f"{config.api_base.rstrip('/')}/2010-04-01/Accounts/"
            f"{quote(config.account_sid, safe='')}/Messages.json"
        )
        # A messaging service picks the sending number itself (pools, country rules).
        self._sender_field = "MessagingServiceSid" if config.sender.startswith("MG") else "From"
        self._client = make_client(timeout_seconds)

    async def send(self, message: OutgoingCode) -> None:
        """Hand the message to Twilio, or raise `DeliveryError` without the code in it."""
        form = {
            "To": message.credential.address,
            self._sender_field: self._config.sender,
            "Body": self._templates.sms(message).text,
        }
        try:
            response = await post_with_retries(
                self._client,
                self._url,
                retries=self._retries,
                content=urlencode(form).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                auth=httpx.BasicAuth(self._config.account_sid, self._config.auth_token),
            )
        except httpx.TransportError as exc:
            raise DeliveryError(f"Twilio could not be reached ({type(exc).__name__})") from None
        if not response.is_success:
            error_code, error_message = _twilio_error(response)
            # Twilio's message may quote the request; the code must never reach a log, and
            # %r keeps line breaks in the provider's text from forging log lines.
            logger.warning(
                "Twilio refused the message: HTTP %d, error %s: %r",
                response.status_code,
                error_code,
                error_message.replace(message.code, "[code]")[:_MAX_LOGGED_CHARS],
            )
            raise DeliveryError(
                f"Twilio refused the message: HTTP {response.status_code}, error {error_code}"
            )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


def _twilio_error(response: httpx.Response) -> tuple[str, str]:
    """Twilio's numeric error code and message from an error body, when it has them."""
    try:
        body = response.json()
    except ValueError:
        return "unknown", ""
    if not isinstance(body, dict):
        return "unknown", ""
    code, text = body.get("code"), body.get("message")
    return (
        str(code) if isinstance(code, int) else "unknown",
        text if isinstance(text, str) else "",
    )
