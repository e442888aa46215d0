"""Sessions, CSRF-checked forms and the small helpers every route uses."""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from examples.twofactor import pages
from examples.twofactor.config import Config
from examples.twofactor.storage import Session, Storage, User
from otpserver.client import OtpClient


@dataclass(frozen=True, slots=True)
class Services:
    """What every route needs: the configuration, the database and the otpserver client."""

    config: Config
    storage: Storage
    otp: OtpClient


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def session_of(request: Request) -> Session:
    found: Session = request.state.session
    return found


class Sessions(BaseHTTPMiddleware):
    """Loads the session named by the cookie (or starts an anonymous one) and sets the
    cookie again whenever a route replaced the session."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        found = services(request)
        cookie = found.config.session_cookie
        token = request.cookies.get(cookie)
        session = found.storage.session(token) if token else None
        request.state.session = session or found.storage.new_session()
        response = await call_next(request)
        current = session_of(request)
        if current.token != token:
            response.set_cookie(
                cookie,
                current.token,
                httponly=True,
                secure=found.config.secure_cookies,
                samesite="lax",
                path="/",
            )
        return response


def replace_session(request: Request, user_id: str | None, stage: str) -> Session:
    """End the current session and start another: at every change of who is signed in."""
    storage = services(request).storage
    storage.end_session(session_of(request).token)
    request.state.session = storage.new_session(user_id, stage)
    return session_of(request)


async def form_of(request: Request) -> dict[str, str] | None:
    """The posted fields, or None when the CSRF token is not this session's. With SameSite
    cookies and this token, another site can neither read nor forge a form post."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    expected = session_of(request).csrf
    if not hmac.compare_digest(fields.get("csrf", ""), expected):
        return None
    return fields


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers={"cache-control": "no-store"})


def to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


FORBIDDEN = pages.problem("Form expired", "The form expired. Go back, reload it and try again.")

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def posted(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST route that runs only with this session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        fields = await form_of(request)
        if fields is None:
            return html(FORBIDDEN, 403)
        return await handler(request, fields)

    return endpoint


def user_at(request: Request, stage: str) -> User | None:
    """The session's user when the session is at `stage`."""
    session = session_of(request)
    if session.stage != stage or session.user_id is None:
        return None
    return services(request).storage.user(session.user_id)


def set_device_cookie(config: Config, response: Response, device: str, expires: str) -> None:
    """The device token in a cookie of the host's own that lasts exactly as long as the trust."""
    expires_at = calendar.timegm(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ"))
    response.set_cookie(
        config.device_cookie,
        device,
        max_age=max(0, expires_at - int(time.time())),
        httponly=True,
        secure=config.secure_cookies,
        samesite="lax",
        path="/",
    )
