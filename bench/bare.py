"""The ceiling: a bare Starlette endpoint that the real server's results are divided by.

It does the least any JSON POST endpoint does (read the body, answer a small JSON object)
on the same routes, served by `otpserver.__main__.serve` like the real application, so a
ratio to it says how much of the stack's capacity the OTP work itself takes.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROUTES = ("/api/otp/create", "/api/otp/resend", "/api/otp/verify")


async def endpoint(request: Request) -> Response:
    """Read the body and answer `{"ok": true}`."""
    await request.body()
    return JSONResponse({"ok": True})


async def health(request: Request) -> Response:
    """Liveness, for the harness to know the server is up."""
    return JSONResponse({"status": "ok"})


def build() -> Starlette:
    """The ceiling application (an ASGI factory, like `otpserver.asgi:build`)."""
    routes = [Route(path, endpoint, methods=["POST"]) for path in ROUTES]
    return Starlette(routes=[*routes, Route("/health", health, methods=["GET"])])
