"""`create_app`: builds the ASGI application from settings and hooks, checking invariants."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Scope

from otpserver.crypto.atrest import AtRestRing
from otpserver.crypto.keyring import KeyRing
from otpserver.delivery.outbox import OutboxSender, outbox_routes
from otpserver.delivery.templates import Templates
from otpserver.errors import ConfigError, OtpError, ServerError
from otpserver.factors.devices import TrustedDevices
from otpserver.factors.routes import routes as factor_routes
from otpserver.factors.service import SecondFactors
from otpserver.hooks import Hooks
from otpserver.http.browser import BrowserEndpoints
from otpserver.http.cookies import CookieCodec
from otpserver.http.edge import EdgeMiddleware, EdgePolicy
from otpserver.http.exchange import ApiEndpoint, ApiHandler, error_response
from otpserver.http.health import Readiness, ready_endpoint
from otpserver.http.links import LinkEndpoints
from otpserver.limits.limiter import Limiter
from otpserver.observability import audit
from otpserver.observability.requests import RequestContext
from otpserver.otp.policy import OtpPolicy
from otpserver.results.jwks import JWKS_PATH, jwks_endpoint
from otpserver.results.signer import ResultSigner
from otpserver.settings.environment import MASTER_KEY_BYTES, Settings
from otpserver.settings.proxies import TrustedProxies
from otpserver.v1.auth import authenticate, gated_key
from otpserver.v1.challenges import Challenges, ChallengeTokens, create_body_model
from otpserver.v1.keys import ApiKeyring
from otpserver.v1.services import ApiServices
from otpserver.verification.links import LinkApprovals, LinkTokens
from otpserver.verification.sealing import PendingSealer
from otpserver.verification.service import Verifications

log = logging.getLogger("otpserver")

STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
_PAGE_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class ExactRoute(Route):
    """A route that does not exist for other methods: 404 with an empty body, never 405,
    so the API reveals nothing about which paths exist."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        return (Match.NONE, {}) if match is Match.PARTIAL else (match, child)


class OtpApp(Starlette):
    """Starlette with the edge middleware outside even its own error pages.

    Middleware added the ordinary way (`app.add_middleware`) runs inside the edge and sees
    every route, the API's included.
    """

    def __init__(
        self,
        edge: EdgePolicy,
        *,
        proxies: TrustedProxies | None = None,
        access_log: bool = False,
        **kwargs: Any,
    ) -> None:
        self.edge = edge
        self.proxies = proxies or TrustedProxies()
        self.access_log = access_log
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        # With no middleware added, the edge hands API requests straight to their endpoints
        # (see EdgeMiddleware); with some, everything goes through Starlette's routing.
        direct = {} if self.user_middleware else api_endpoints(self.router.routes)
        edge = EdgeMiddleware(
            super().build_middleware_stack(), self.edge, direct=direct, application=self
        )
        # The request id goes outermost, so every line logged for a request carries it.
        return RequestContext(edge, self.proxies, access_log_enabled=self.access_log)


def derive_key(master_key: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for one purpose, so no key is ever used for two jobs."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_key)


def check_deployment(settings: Settings, hooks: Hooks) -> None:
    """Refuse start-up combinations that would be unsafe or silently broken."""
    if settings.workers > 1 and settings.uses_memory_store:
        raise ConfigError(
            f"OTP_WORKERS={settings.workers} needs a shared store: the memory store lives in one "
            "process; set OTP_STORE_URL=redis://... or OTP_WORKERS=1"
        )
    if settings.is_development:
        return
    if settings.master_key is None:
        raise ConfigError("OTP_MASTER_KEY is required in production (base64url of 32 random bytes)")
    if settings.test_credentials:
        raise ConfigError("OTP_TEST_CREDENTIALS is for OTP_ENV=development only")
    if settings.delivery.autofill_domain is None:
        # The domain goes into every message (and binds SMS autofill to a site); taking it
        # from the request's Host header would let a caller choose it.
        raise ConfigError(
            "OTP_AUTOFILL_DOMAIN is required in production: the site name shown in messages"
        )
    if settings.links.enabled and settings.links.base_url is None:
        # Like the site name, a link's host must never come from a request's Host header.
        raise ConfigError("OTP_LINK_BASE_URL is required in production with OTP_LINKS=true")


def check_test_credentials(settings: Settings, policy: OtpPolicy) -> dict[str, str]:
    """The development test identities, each with a code that fits the policy."""
    for code in settings.test_credentials.values():
        if len(code) != policy.length or any(c not in policy.alphabet for c in code):
            raise ConfigError(
                f"OTP_TEST_CREDENTIALS codes must be {policy.length} characters "
                f"of the code alphabet"
            )
    return dict(settings.test_credentials)


def create_app(
    settings: Settings, hooks: Hooks, *, clock: Callable[[], float] = time.time
) -> OtpApp:
    """The application, wired to the stores, sender and hooks the settings choose."""
    check_deployment(settings, hooks)
    policy = hooks.policy.with_overrides(settings.policy_overrides)
    sender = hooks.make_sender(settings)
    if sender.development_only and not settings.is_development:
        raise ConfigError(
            "OTP_ENV=production refuses the development sender: configure delivery "
            "(see custom/send.py) or set OTP_ENV=development"
        )
    test_codes = check_test_credentials(settings, policy)
    master_key = settings.master_key
    if master_key is None:
        log.warning("development mode: using an ephemeral master key; cookies die on restart")
        master_key = os.urandom(MASTER_KEY_BYTES)
    ids = hooks.make_id_store(settings)
    key_store = hooks.make_key_store(settings)
    limits = hooks.limits.with_overrides(settings.limit_overrides)
    counters = hooks.make_counter_store(settings)
    markers = hooks.make_marker_store(settings)
    if not settings.is_development and not limits.sms_allowlist:
        log.warning(
            "OTP_SMS_ALLOWLIST is empty: SMS codes may go to every country; list the ones you serve"
        )
    keyring = KeyRing(
        key_store, master_key, settings.kek_rotation_seconds, settings.api.previous_master_keys
    )
    results = ResultSigner.from_settings(
        settings.api, master_key, development=settings.is_development
    )
    readiness = Readiness.of(ids, key_store, keyring, settings)
    trail = audit.install_for(settings.operations, derive_key(master_key, b"otpserver/audit/v1"))
    limiter = Limiter(
        policy=limits,
        counters=counters,
        secret=derive_key(master_key, b"otpserver/limit-key/v1"),
        proxies=settings.trusted_proxies,
    )
    link_tokens = LinkTokens(
        PendingSealer(keyring), derive_key(master_key, b"otpserver/link-marker/v1")
    )
    verifications = Verifications(
        policy=policy,
        generate_code=hooks.generate_code,
        sender=sender,
        ids=ids,
        limiter=limiter,
        digest_key=derive_key(master_key, b"otpserver/code-digest/v1"),
        test_codes=test_codes,
        previous_digest_keys=tuple(
            derive_key(key, b"otpserver/code-digest/v1")
            for key in settings.api.previous_master_keys
        ),
        public_host=settings.delivery.autofill_domain,
        links=link_tokens if settings.links.enabled else None,
    )
    endpoints = BrowserEndpoints(
        verifications=verifications,
        credential_body=hooks.credential_body,
        codec=CookieCodec(keyring, secure=not settings.is_development),
        final=hooks.final,
        clock=clock,
        results=results,
        links=settings.links,
    )

    api_routes: dict[str, ApiHandler] = {
        "/api/otp/create": endpoints.create,
        "/api/otp/resend": endpoints.resend,
        "/api/otp/verify": endpoints.verify,
    }
    approvals = LinkApprovals(link_tokens, markers) if settings.links.enabled else None
    link_routes: list[BaseRoute] = []
    if approvals is not None:
        links = LinkEndpoints(
            endpoints,
            link_tokens,
            approvals,
            cross_device=settings.links.cross_device,
            clock=clock,
            pages=Templates.load(default_locale=settings.delivery.default_locale),
        )
        api_routes["/api/otp/status"] = links.status
        # GET answers HEAD too; both only render a page.
        link_routes.append(ExactRoute("/l/{token}", links.link, methods=["GET", "POST"]))
    atrest = AtRestRing(master_key, settings.api.previous_master_keys)
    factors = SecondFactors.build(
        settings.factors,
        master_key=master_key,
        previous_master_keys=settings.api.previous_master_keys,
        ring=atrest,
        markers=markers,
        counters=counters,
        issuer=results,
        clock=clock,
    )
    devices = TrustedDevices.build(
        settings.factors,
        master_key=master_key,
        previous_master_keys=settings.api.previous_master_keys,
        ring=atrest,
        markers=markers,
        counters=counters,
        clock=clock,
    )
    challenges = Challenges(
        verifications=verifications,
        create_body=create_body_model(hooks.credential_body),
        tokens=ChallengeTokens(PendingSealer(keyring)),
        results=results,
        clock=clock,
        links=settings.links,
        approvals=approvals,
    )
    routes: list[BaseRoute] = [
        *api_route_table(api_routes, settings.max_body_bytes),
        *challenges.routes(post_route),
        *factor_routes(factors, devices, authenticate, gated_key, post_route),
        *link_routes,
        ExactRoute("/health", health, methods=["GET"]),
        ExactRoute(JWKS_PATH, jwks_endpoint(results, clock), methods=["GET"]),
        ExactRoute(
            "/health/ready",
            ready_endpoint(readiness),
            methods=["GET"],
        ),
    ]
    if settings.is_development:
        routes.extend(static_routes())
        if isinstance(sender, OutboxSender):
            routes.extend(outbox_routes(sender.outbox))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await ids.aclose()
            await key_store.aclose()
            await counters.aclose()
            await markers.aclose()
            trail.close()
            close_sender = getattr(sender, "aclose", None)
            if close_sender is not None:
                await close_sender()

    app = OtpApp(
        EdgePolicy(
            max_body_bytes=settings.max_body_bytes,
            cors_origins=frozenset(settings.cors_origins),
            https_only=not settings.is_development,
            loopback_only=settings.is_development,
        ),
        proxies=settings.trusted_proxies,
        access_log=settings.operations.access_log,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={OtpError: _render_otp_error, Exception: _render_server_error},
    )
    app.router.default = _not_found
    app.state.settings = settings
    app.state.policy = policy
    app.state.endpoints = endpoints
    app.state.verifications = verifications
    app.state.keyring = keyring
    app.state.results = results
    app.state.api = ApiServices(
        keys=ApiKeyring(settings.api.keys),
        counters=counters,
        limit_secret=derive_key(master_key, b"otpserver/limit-key/v1"),
        key_requests=settings.api.key_requests,
        key_window_seconds=settings.api.key_window_seconds,
        proxies=settings.trusted_proxies,
        results=results,
        atrest=atrest,
        markers=markers,
        memo_secrets=tuple(
            derive_key(key, b"otpserver/idempotency/v1")
            for key in (master_key, *settings.api.previous_master_keys)
        ),
        clock=clock,
    )
    app.state.key_store = key_store
    app.state.counters = counters
    app.state.markers = markers
    app.state.limits = limits
    app.state.sender = sender
    app.state.readiness = readiness
    return app


def post_route(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> BaseRoute:
    """A POST route that does not exist for other methods (404, never 405)."""
    return ExactRoute(path, endpoint, methods=["POST"])


def api_route_table(handlers: Mapping[str, ApiHandler], max_body_bytes: int) -> list[BaseRoute]:
    """The API's POST routes as Starlette routes served by plain-ASGI `ApiEndpoint`s."""
    return [
        ExactRoute(path, ApiEndpoint(handler, max_body_bytes), methods=["POST"])
        for path, handler in handlers.items()
    ]


def api_endpoints(routes: Iterable[BaseRoute]) -> dict[str, ASGIApp]:
    """The POST-only routes served by an `ApiEndpoint`, by path."""
    return {
        route.path: route.app
        for route in routes
        if isinstance(route, Route)
        and isinstance(route.app, ApiEndpoint)
        and route.methods == {"POST"}
    }


async def health(request: Request) -> Response:
    """Liveness: 200 while the process serves requests (the store is not consulted)."""
    return JSONResponse({"status": "ok"})


def static_routes() -> list[BaseRoute]:
    """The sign-in page, served in development only; production apps ship it themselves.

    The page loads its assets by relative URL, so it is served at `/` only (not under
    `/static/`, where those URLs would point one level too deep).
    """
    files = {
        "/" if path.name == "index.html" else f"/static/{path.name}": path
        for path in STATIC_DIR.glob("*")
        if path.suffix in _STATIC_TYPES
    }

    async def serve(request: Request) -> Response:
        path = files[request.url.path]
        return Response(
            path.read_bytes(),
            media_type=_STATIC_TYPES[path.suffix],
            headers={"Content-Security-Policy": _PAGE_CSP},
        )

    return [ExactRoute(route, serve, methods=["GET"]) for route in files]


async def _not_found(scope: Scope, receive: object, send: Callable[..., object]) -> None:
    response = Response(status_code=404)
    await response(scope, receive, send)  # type: ignore[arg-type]


async def _render_otp_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, OtpError)  # noqa: S101 -- registered for OtpError only  # nosec B101
    return error_response(error).starlette()


async def _render_server_error(request: Request, error: Exception) -> Response:
    return error_response(ServerError()).starlette()
