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

    `verified.result` is the signed result of this verification (SPEC §11): a short-lived
    compact JWS (EdDSA) naming the credential, with `aud` set to `OTP_RESULT_AUDIENCE`. Any
    server can check it offline against `GET /.well-known/jwks.json` (see the README, "From
    your backend"); it is None only when the core was built without a signer.

    `verified.via_link` is True when the code came through its emailed sign-in link (a
    click in this browser, or approval by number from another device) instead of being
    typed. A link is also this hook's request when clicked in the same browser
    (`request.url.path` starts with `/l/`): answer a redirect there if you want a page.

Trade-offs of the default
    Returns the verified credential and the signed result as JSON. The page hands `result`
    to its own backend, which verifies it before trusting the credential: the credential
    field alone proves nothing to another server, since a browser can send any JSON it
    likes. If your backend runs this hook's job itself (it receives no request from here),
    replace the body with your session logic instead.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

# Starlette's JSONResponse with a faster encoder (the same JSON): use either.
from otpserver import JSONResponse, VerifiedCredential


async def final(verified: VerifiedCredential, request: Request) -> Response:
    """200 `{"verified": true, "credential": ..., "channel": ..., "result": ...}`."""
    return JSONResponse(
        {
            "verified": True,
            "credential": verified.credential.address,
            "channel": verified.credential.channel,
            "result": verified.result,
        }
    )
