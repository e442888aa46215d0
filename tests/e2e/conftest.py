"""Fixtures for the browser tests: a real server process, the page on other origins, Chromium.

One server process (`python -m tests.support.server`: development mode, memory store, the
tests' own hooks) serves the session. Two tiny static servers on other ports of 127.0.0.1
serve the same page pointed at it: one origin is in `OTP_CORS_ORIGINS`, the other is not.
Codes are read from the development sender's line in the server's log, so the tests need
no outbox endpoint. Every test gets a fresh browser context, so no cookie leaks from one
test into another.

Chromium is the operating system's package (`apt-get install chromium`); Playwright never
downloads a browser here. Without it the tests skip locally and fail when `CI=true`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.support.process import ServerProcess
from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "otpserver" / "http" / "static"
HOST = "127.0.0.1"
RESEND_COOLDOWN_SECONDS = 2
MAX_ATTEMPTS = 3
CREDENTIAL_SENDS = 3
"""Codes one address may get per window before `RATE:LIMITED`."""
SHORT_TTL_SECONDS = 10
"""How long codes live on the expiry test's server: short enough to wait out once, long
enough that a busy machine still types the next code in time (3 s was not, once)."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Sites:
    """Origins serving the page with `data-api-base` pointing at the API."""

    allowed: str
    refused: str


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop the access log."""


def _write_site(root: Path, api_url: str) -> Path:
    """Copy the page into `root`, pointed at `api_url`, laid out as the server serves it."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    pointed = html.replace('data-api-base=""', f'data-api-base="{api_url}"', 1)
    assert pointed != html, "index.html lost its data-api-base attribute"
    (root / "static").mkdir(parents=True)
    (root / "index.html").write_text(pointed, encoding="utf-8")
    for name in ("app.js", "style.css"):
        shutil.copyfile(STATIC_DIR / name, root / "static" / name)
    return root


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The system Chromium; skipped locally when absent, a failure when CI=true."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium not installed: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def api_port() -> int:
    """The port the server will listen on, chosen before the pages that point at it."""
    return free_port()


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory, api_port: int) -> Iterator[Sites]:
    """Two static servers on other ports of 127.0.0.1 serving the page for the API."""
    api_url = f"http://{HOST}:{api_port}"
    servers: list[ThreadingHTTPServer] = []
    threads: list[threading.Thread] = []
    origins: list[str] = []
    for name in ("allowed", "refused"):
        root = _write_site(tmp_path_factory.mktemp(f"site-{name}"), api_url)
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = ThreadingHTTPServer((HOST, 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        origins.append(f"http://{HOST}:{server.server_address[1]}")
    yield Sites(allowed=origins[0], refused=origins[1])
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def running_server(port: int, **settings: str) -> Iterator[ServerProcess]:
    """Run the test server in development mode on `port` with extra `OTP_*` settings."""
    server = ServerProcess(
        {
            "OTP_STORE_URL": "memory://",
            "OTP_RESEND_COOLDOWN_SECONDS": str(RESEND_COOLDOWN_SECONDS),
            "OTP_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "OTP_LIMIT_CREDENTIAL_SENDS": str(CREDENTIAL_SENDS),
            # Every test calls from 127.0.0.1: the per-address limits must not add up.
            "OTP_LIMIT_ADDRESS_REQUESTS": "10000",
            "OTP_LIMIT_ADDRESS_VERIFIES": "10000",
            **settings,
        },
        port=port,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def otp_server(chromium_path: str, api_port: int, sites: Sites) -> Iterator[ServerProcess]:
    """The session's server, allowing the `sites.allowed` origin."""
    with running_server(api_port, OTP_CORS_ORIGINS=sites.allowed) as server:
        yield server


@pytest.fixture
def short_lived_server(chromium_path: str) -> Iterator[ServerProcess]:
    """A server of its own whose codes live `SHORT_TTL_SECONDS`, for expiry."""
    with running_server(free_port(), OTP_TTL_SECONDS=str(SHORT_TTL_SECONDS)) as server:
        yield server


# Module scope, not session: while the sync driver runs, its event loop counts as running in
# this thread, so pytest-asyncio could not run the async tests of other modules.
@pytest.fixture(scope="module")
def playwright_driver(chromium_path: str) -> Iterator[Playwright]:
    """Playwright's driver process, shared by one test module."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, chromium_path: str) -> Iterator[Browser]:
    """Headless system Chromium; Playwright gives each launch a fresh temporary profile."""
    launched = playwright_driver.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, otp_server: ServerProcess) -> Iterator[BrowserContext]:
    """A fresh browser context (no cookies) whose relative URLs go to the server."""
    fresh = browser.new_context(base_url=otp_server.url, viewport={"width": 800, "height": 640})
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page of the fresh context; any uncaught script error fails the test."""
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def email(request: pytest.FixtureRequest) -> str:
    """An address no other test uses, so codes on the shared stderr never mix."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: `OTP_SCREENSHOT_DIR` (e.g. docs/screenshots) or a temp dir."""
    chosen = os.environ.get("OTP_SCREENSHOT_DIR")
    target = Path(chosen) if chosen else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target
