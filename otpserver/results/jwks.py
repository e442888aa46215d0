"""`GET /.well-known/jwks.json`: the public keys that verify results, with a cache lifetime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver.results.signer import ResultSigner

JWKS_PATH = "/.well-known/jwks.json"


def jwks_endpoint(
    signer: ResultSigner, clock: Callable[[], float]
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint serving `signer`'s key set; public, and cacheable for a third of a period
    at most, so a cached copy always holds the key that signs next."""

    async def jwks(request: Request) -> Response:
        return JSONResponse(
            signer.jwks(clock()),
            headers={"Cache-Control": f"public, max-age={signer.keys.cache_seconds()}"},
            media_type="application/jwk-set+json",
        )

    return jwks
