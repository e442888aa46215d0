"""HTTP edge: health, unknown routes, security headers, body limits, cross-origin rules."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from otpserver.hooks import VerifiedCredential
from otpserver.http.app import ExactRoute, OtpApp
from tests.conftest import AppFactory
from tests.support.api import Browser
from tests.support.asgi import post
from tests.support.fakes import RecordingSender
from tests.support.hooks import HOOKS

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "strict-transport-security" in response.headers


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    """GET /health answers 200 while the process runs."""
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert_security_headers(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/api/otp/create"),
        ("PUT", "/api/otp/verify"),
        ("DELETE", "/health"),
        ("POST", "/health"),
        ("GET", "/"),
        ("GET", "/dev/outbox"),
    ],
)
async def test_unknown_routes_and_methods_are_empty_404s(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    """Anything but the four routes is 404 with an empty body (never 405), with the headers."""
    response = await client.request(method, path)
    assert response.status_code == 404
    assert response.content == b""
    assert_security_headers(response)


async def test_error_responses_carry_security_headers(client: httpx.AsyncClient) -> None:
    """Client errors carry the same security headers as successes."""
    response = await client.post("/api/otp/verify", data={"otp": "123456"})
    assert response.status_code == 400
    assert_security_headers(response)
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_server_errors_are_json_with_headers(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """A crashing final hook gives 500 SERVER as JSON, with security headers, no traceback."""

    async def broken(verified: VerifiedCredential, request: Request) -> Response:
        raise RuntimeError("database unreachable")

    app = make_app(hooks=dataclasses.replace(HOOKS, final=broken))
    browser = Browser(client_for(app))
    await browser.create()
    response = await browser.verify(sender.last_code)
    assert response.status_code == 500
    assert response.json()["error"] == "SERVER"
    assert "database" not in response.text
    assert_security_headers(response)


async def test_oversized_bodies_are_413_before_parsing(client: httpx.AsyncClient) -> None:
    """A declared Content-Length over the limit is refused without reading the body."""
    response = await client.post(
        "/api/otp/create",
        content=b'{"email": "' + b"a" * 5000 + b'@example.com"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "BODY:TOO_LARGE"
    assert_security_headers(response)


async def test_chunked_bodies_over_the_limit_are_413(client: httpx.AsyncClient) -> None:
    """A body without Content-Length is counted as it streams in and cut at the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'@example.com"}'

    response = await client.post(
        "/api/otp/create", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "BODY:TOO_LARGE"


async def test_chunked_bodies_over_the_limit_are_413_on_every_route(
    app: OtpApp, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> None:
    """A route a forker adds beside the API reads its body under the same limit: the edge
    counts what it receives, so reading past the limit answers 413 and never reaches it."""
    read: list[bytes] = []

    async def echo(request: Request) -> Response:
        read.append(await request.body())
        return Response(b"read")

    app.router.routes.append(ExactRoute("/echo", echo, methods=["POST"]))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"a" * 1000

    client = client_for(app)
    response = await client.post("/echo", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "BODY:TOO_LARGE"
    assert read == []
    assert (await client.post("/echo", content=b"small")).text == "read"


async def test_cross_site_requests_are_refused(client: httpx.AsyncClient) -> None:
    """`Sec-Fetch-Site: cross-site` is refused whatever the origin says."""
    response = await client.post(
        "/api/otp/create",
        json={"email": "ada@example.com"},
        headers={"sec-fetch-site": "cross-site", "origin": "https://otp.example.com"},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "ORIGIN:NOT_ALLOWED"


async def test_foreign_origins_are_refused(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """An Origin that is neither this host nor allow-listed is refused before anything runs."""
    response = await client.post(
        "/api/otp/create",
        json={"email": "ada@example.com"},
        headers={"origin": "https://evil.example.net"},
    )
    assert response.status_code == 403
    assert sender.sent == []


async def test_same_origin_requests_pass(client: httpx.AsyncClient) -> None:
    """The browser's Origin header for this very host is accepted."""
    response = await client.post(
        "/api/otp/create",
        json={"email": "ada@example.com"},
        headers={"origin": "https://otp.example.com", "sec-fetch-site": "same-origin"},
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_allow_listed_origins_get_cors_with_credentials(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> None:
    """Listed origins get a preflight answer and credentialed CORS headers; others do not."""
    client = client_for(make_app(cors_origins=("https://app.example.com",)))
    preflight = await client.options(
        "/api/otp/create",
        headers={
            "origin": "https://app.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    response = await client.post(
        "/api/otp/create",
        json={"email": "ada@example.com"},
        headers={"origin": "https://app.example.com", "sec-fetch-site": "same-site"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["vary"] == "Origin"
    refused = await client.options(
        "/api/otp/create",
        headers={"origin": "https://other.example.com", "access-control-request-method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


async def test_the_api_works_under_a_mount_point_with_the_same_origin_rules(
    app: OtpApp, sender: RecordingSender
) -> None:
    """Served below a `root_path` (a proxy prefix), the routes answer and still refuse
    cross-site callers: the edge matches the path below the mount point."""
    transport = httpx.ASGITransport(app=app, root_path="/auth")
    async with httpx.AsyncClient(transport=transport, base_url="https://otp.example.com") as client:
        browser = Browser(client)
        created = await browser.post("/auth/api/otp/create", json={"email": "ada@example.com"})
        assert created.status_code == 200
        assert_security_headers(created)
        verified = await browser.post("/auth/api/otp/verify", data={"otp": sender.last_code})
        assert verified.status_code == 200
        assert verified.json()["verified"] is True
        refused = await client.post(
            "/auth/api/otp/create",
            json={"email": "ada@example.com"},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "ORIGIN:NOT_ALLOWED"
        wrong_method = await client.get("/auth/api/otp/create")
        assert wrong_method.status_code == 404
    assert len(sender.sent) == 1


async def test_the_final_hook_gets_a_readable_starlette_request(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient], sender: RecordingSender
) -> None:
    """Hooks written against Starlette can read the request's headers and its body again."""
    seen: dict[str, object] = {}

    async def final(verified: VerifiedCredential, request: Request) -> Response:
        seen["body"] = await request.body()
        seen["agent"] = request.headers.get("user-agent")
        seen["client"] = request.client.host if request.client else None
        return Response(status_code=204, headers={"x-signed-in": "yes"})

    app = make_app(hooks=dataclasses.replace(HOOKS, final=final))
    browser = Browser(client_for(app))
    await browser.create()
    response = await browser.verify(sender.last_code, headers={"user-agent": "probe/1"})
    assert response.status_code == 204
    assert response.headers["x-signed-in"] == "yes"
    assert_security_headers(response)
    assert seen == {
        "body": f"otp={sender.last_code}".encode(),
        "agent": "probe/1",
        "client": "127.0.0.1",
    }


async def test_a_client_that_leaves_before_its_body_gets_nothing_and_changes_nothing(
    app: OtpApp, sender: RecordingSender
) -> None:
    """A disconnect while the body is awaited ends the request quietly: no answer, no send."""
    answer, sent = await post(app, "/api/otp/create", None)
    assert answer is None
    assert sent == []
    assert sender.sent == []
