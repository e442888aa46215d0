"""Middleware added the ordinary Starlette way sees every route, the API's included.

Instrumentation (Prometheus, OpenTelemetry, a fork's own audit middleware) is added with
`app.add_middleware`; it must see `/api/otp/*` like any other route, while the edge's
rules (security headers, CORS, the body limit) still wrap everything.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpserver.http.app import OtpApp
from otpserver.http.edge import EdgeMiddleware
from tests.conftest import AppFactory
from tests.support.fakes import RecordingSender


class RecordingMiddleware:
    """Notes every request's path and the status it was answered with."""

    seen: list[tuple[str, int]]

    def __init__(self, app: ASGIApp, seen: list[tuple[str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


async def test_added_middleware_sees_the_api_routes(
    make_app: AppFactory, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """create, verify and an unknown API path all pass through middleware added by a fork."""
    app = make_app()
    seen: list[tuple[str, int]] = []
    app.add_middleware(RecordingMiddleware, seen=seen)
    client = client_for(app)
    created = await client.post("/api/otp/create", json={"email": "mw@example.com"})
    wrong = await client.post("/api/otp/verify", data={"otp": "000000"})
    missing = await client.post("/api/otp/nope", json={})
    health = await client.get("/health")
    assert (created.status_code, wrong.status_code, missing.status_code) == (200, 403, 404)
    assert health.status_code == 200
    assert seen == [
        ("/api/otp/create", 200),
        ("/api/otp/verify", 403),
        ("/api/otp/nope", 404),
        ("/health", 200),
    ]


async def test_api_answers_keep_every_edge_header_once(
    make_app: AppFactory, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """An API answer carries the security and CORS headers exactly once, behind middleware."""
    app = make_app(cors_origins=("https://app.example.com",))
    app.add_middleware(RecordingMiddleware, seen=[])
    client = client_for(app)
    answer = await client.post(
        "/api/otp/create",
        json={"email": "mw2@example.com"},
        headers={"origin": "https://app.example.com"},
    )
    assert answer.status_code == 200
    for name in (
        "cache-control",
        "x-content-type-options",
        "content-security-policy",
        "strict-transport-security",
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ):
        assert len(answer.headers.get_list(name)) == 1, name
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_a_correct_code_answers_through_middleware_with_edge_headers(
    make_app: AppFactory,
    client_for: Callable[..., httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """The final hook's own Starlette response also gets the edge headers, once."""
    app = make_app()
    seen: list[tuple[str, int]] = []
    app.add_middleware(RecordingMiddleware, seen=seen)
    client = client_for(app)
    await client.post("/api/otp/create", json={"email": "mw3@example.com"})
    verified = await client.post("/api/otp/verify", data={"otp": sender.last_code})
    assert verified.status_code == 200
    assert verified.headers.get_list("x-content-type-options") == ["nosniff"]
    assert verified.headers.get_list("cache-control") == ["no-store"]
    assert seen[-1] == ("/api/otp/verify", 200)


def edge_of(app: OtpApp) -> EdgeMiddleware:
    """The edge layer of a built application."""
    layer: object = app.build_middleware_stack()
    while not isinstance(layer, EdgeMiddleware):
        layer = getattr(layer, "app")  # noqa: B009 -- each layer wraps the next as `app`
    return layer


async def test_the_api_skips_starlettes_layers_only_while_no_middleware_is_added(
    make_app: AppFactory,
) -> None:
    """Without added middleware the edge serves the API routes itself; adding any middleware
    sends every request through Starlette's routing instead."""
    app = make_app()
    assert set(edge_of(app).direct) == {"/api/otp/create", "/api/otp/resend", "/api/otp/verify"}
    app.add_middleware(RecordingMiddleware, seen=[])
    assert edge_of(app).direct == {}
