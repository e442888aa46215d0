"""Client-visible errors: one class per stable error code, rendered by one handler.

Every refusal the server can give a client is a subclass of `OtpError`. The class carries
the stable `code`, the HTTP `status` and a human `message`; an instance may add JSON
fields (`extra`) and response headers. Nothing else ever reaches a client as an error, so
the list below, `ERROR_CLASSES`, is also the list `openapi.json` documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class OtpError(Exception):
    """Base of every client-visible error; carries the data its response needs."""

    code: ClassVar[str] = "SERVER"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "The server could not complete the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = message or self.message
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        """The JSON body: the stable code, the human message, then any extra fields."""
        return {"error": self.code, "message": self.detail, **self.extra}


class ServerError(OtpError):
    """Anything unexpected; the details go to the log, never to the client."""


class CredentialInvalid(OtpError):
    code = "CREDENTIAL:INVALID"
    status = 400
    message = "The credential is not a valid email address or phone number."


class OtpInvalidFormat(OtpError):
    code = "OTP:INVALID_FORMAT"
    status = 400
    message = "The code has the wrong format."


class InvalidCookie(OtpError):
    """One opaque answer for every way a cookie can be bad (missing, forged, replayed...)."""

    code = "OTP:INVALID_COOKIE"
    status = 400
    message = "No pending verification was found for this browser. Request a new code."


class OtpExpired(OtpError):
    code = "OTP:EXPIRED"
    status = 400
    message = "The code has expired. Request a new one."


class OtpIncorrect(OtpError):
    code = "OTP:INCORRECT"
    status = 403
    message = "The code is incorrect."


class TooManyAttempts(OtpError):
    code = "OTP:TOO_MANY_ATTEMPTS"
    status = 403
    message = "Too many incorrect codes. Request a new code."


class VerificationNotAllowed(OtpError):
    code = "OTP:VERIFICATION_NOT_ALLOWED"
    status = 403
    message = "Verification is temporarily blocked after an incorrect code. Try again later."


class ResendNotAllowed(OtpError):
    code = "OTP:RESEND_NOT_ALLOWED"
    status = 429
    message = "A new code cannot be sent yet."


class TooManyCredentials(OtpError):
    code = "OTP:TOO_MANY_CREDENTIALS"
    status = 400
    message = "Too many verifications are pending in this browser."


class RateLimited(OtpError):
    """A limit refused the request. `refused_by` names the limits that said no, for the
    server's own use (a locked credential is a domain outcome on `/v1`); it never reaches
    the client, which learns only when to come back."""

    code = "RATE:LIMITED"
    status = 429
    message = "Too many requests. Try again later."

    def __init__(
        self,
        message: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        refused_by: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, extra=extra, headers=headers)
        self.refused_by = refused_by


class OriginNotAllowed(OtpError):
    """Cross-site requests and origins outside `OTP_CORS_ORIGINS`."""

    code = "ORIGIN:NOT_ALLOWED"
    status = 403
    message = "Requests from this origin are not allowed."


class HostNotAllowed(OtpError):
    """Development mode answers only requests addressed to this machine's loopback names, so
    a page on a rebinding domain cannot read the codes in `/dev/outbox`."""

    code = "HOST:NOT_ALLOWED"
    status = 400
    message = "In development this server answers only requests to localhost."


class BodyTooLarge(OtpError):
    code = "BODY:TOO_LARGE"
    status = 413
    message = "The request body is too large."


class BodyInvalid(OtpError):
    """Malformed JSON or form data; schema violations of the credential are CREDENTIAL:INVALID."""

    code = "BODY:INVALID"
    status = 400
    message = "The request body could not be parsed."


class UnsupportedMediaType(OtpError):
    code = "BODY:UNSUPPORTED_MEDIA_TYPE"
    status = 415
    message = "The request body has an unsupported content type."


class SendFailed(OtpError):
    code = "SEND:FAILED"
    status = 502
    message = "The code could not be delivered. Try again later."


class StoreUnavailable(OtpError):
    code = "STORE:UNAVAILABLE"
    status = 503
    message = "The service is temporarily unavailable. Try again later."


class ApiUnauthorized(OtpError):
    """A `/v1` request without a valid API key (missing, malformed, unknown or revoked)."""

    code = "API:UNAUTHORIZED"
    status = 401
    message = "A valid API key is required: Authorization: Bearer otpk_..."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ApiForbidden(OtpError):
    code = "API:FORBIDDEN"
    status = 403
    message = "This API key is not allowed to use this route."


class IdempotencyKeyInvalid(OtpError):
    code = "IDEMPOTENCY:INVALID_KEY"
    status = 400
    message = "Idempotency-Key must be 1 to 255 printable ASCII characters."


class IdempotencyMismatch(OtpError):
    code = "IDEMPOTENCY:MISMATCH"
    status = 422
    message = "This Idempotency-Key was used with a different request body."


class IdempotencyInFlight(OtpError):
    code = "IDEMPOTENCY:IN_FLIGHT"
    status = 409
    message = "A request with this Idempotency-Key is still running. Retry shortly."


ERROR_CLASSES: tuple[type[OtpError], ...] = (
    CredentialInvalid,
    OtpInvalidFormat,
    InvalidCookie,
    OtpExpired,
    OtpIncorrect,
    TooManyAttempts,
    VerificationNotAllowed,
    ResendNotAllowed,
    TooManyCredentials,
    RateLimited,
    OriginNotAllowed,
    HostNotAllowed,
    BodyTooLarge,
    BodyInvalid,
    UnsupportedMediaType,
    SendFailed,
    StoreUnavailable,
    ApiUnauthorized,
    ApiForbidden,
    IdempotencyKeyInvalid,
    IdempotencyMismatch,
    IdempotencyInFlight,
    ServerError,
)


class ConfigError(Exception):
    """Bad configuration found at start-up: one line per problem, each naming its variable.

    `problems` holds the lines; `str()` joins them with newlines, so a single problem reads
    as the one line it is. Start-up collects every problem it finds before raising
    (`otpserver.settings.reader.ConfigProblems`), so an operator fixes them all in one go.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)
