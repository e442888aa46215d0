"""The example application: its routes, its sessions and its otpserver client.

Read `signin.py` first: the sign-in sequence is in its docstring.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from examples.twofactor import account, pages, signin
from examples.twofactor.config import Config
from examples.twofactor.storage import Storage
from examples.twofactor.web import (
    Services,
    Sessions,
    html,
    posted,
)
from otpserver.client import OtpApiError, OtpClient

log = logging.getLogger("twofactor")


async def service_refused(request: Request, error: Exception) -> Response:
    """A transport problem with otpserver (rate limit, outage, unreachable): say so, and log
    only the error's code or kind, never a request body."""
    code = error.code if isinstance(error, OtpApiError) else type(error).__name__
    log.warning("otpserver refused a request: %s", code)
    message = "The verification service is busy or unavailable. Try again in a minute."
    return html(pages.problem("Please try again", message), 503)


def create_app(config: Config, *, storage: Storage | None = None) -> Starlette:
    """The example application for `config`."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with OtpClient(config.otp_url, config.otp_api_key, issuer=config.otp_issuer) as otp:
            database = storage or Storage(config.database)
            app.state.services = Services(config, database, otp)
            try:
                yield
            finally:
                database.close()

    routes = [
        Route("/", account.home),
        Route("/register", signin.register_page),
        Route("/register", posted(signin.register), methods=["POST"]),
        Route("/signin", signin.sign_in_page),
        Route("/signin", posted(signin.sign_in), methods=["POST"]),
        Route("/signout", posted(signin.sign_out), methods=["POST"]),
        Route("/second-factor", signin.second_factor_page),
        Route("/second-factor/email/send", posted(signin.email_send), methods=["POST"]),
        Route("/second-factor/email", posted(signin.email_check), methods=["POST"]),
        Route("/second-factor/totp", posted(signin.totp_check), methods=["POST"]),
        Route("/second-factor/backup", posted(signin.backup_check), methods=["POST"]),
        Route("/totp/enrol", posted(account.totp_enrol), methods=["POST"]),
        Route("/totp/confirm", posted(account.totp_confirm), methods=["POST"]),
        Route("/backup-codes", posted(account.backup_codes), methods=["POST"]),
        Route("/devices", account.devices_page),
        Route("/devices/revoke", posted(account.revoke_device), methods=["POST"]),
        Route("/devices/revoke-all", posted(account.revoke_all_devices), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Sessions)],
        exception_handlers={OtpApiError: service_refused, httpx.TransportError: service_refused},
        lifespan=lifespan,
    )
