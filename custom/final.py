"""Edit this file to decide what happens after a code is verified.

Contract
    `final(verified, request)` returns the response of a successful
    `POST /api/otp/verify`. Typical jobs: mark the address verified in your database, start
    a session (set your own session cookie on the response), or return a signed token.

What the core guarantees before calling
    The code was correct, unexpired and within its attempts; the cookie's single-use ID was
    consumed first, so this runs at most once per code, even under concurrent requests.
    The core adds a `Set-Cookie` that clears (or shrinks) the OTP cookie to your response.

What to raise
    An `otpserver.OtpError` subclass to refuse with a clear code (the code is spent
    either way). Anything else becomes 500 `SERVER`; keep side effects idempotent or
    transactional, because a crash here cannot be retried with the same code.

Trade-offs of the default
    Returns the verified credential as JSON and nothing else: safe for a demo and for
    ownership checks a front end confirms itself, but it proves nothing to another server.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver import VerifiedCredential


async def final(verified: VerifiedCredential, request: Request) -> Response:
    """200 `{"verified": true, "credential": ..., "channel": ...}`."""
    return JSONResponse(
        {
            "verified": True,
            "credential": verified.credential.address,
            "channel": verified.credential.channel,
        }
    )
