"""Browsers for real server processes: each request on its own connection, from a chosen
client address (the servers trust 127.0.0.1 as a proxy), with exactly the cookie chosen."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import set_cookie_value

DEV_COOKIE = "otp"
TRUST_LOOPBACK = {"OTP_TRUSTED_PROXIES": "127.0.0.1"}
"""Lets tests pick each request's client address with X-Forwarded-For."""


_TLS = ssl.create_default_context()
"""Made once: httpx would otherwise load the CA store for every client (the servers are
plain http, so it is never used, only paid for)."""


def fresh_client(base_url: str, timeout: float = 10.0) -> httpx.AsyncClient:
    """A client that never stores a cookie, so a request carries only the cookie it is given."""
    client = httpx.AsyncClient(base_url=base_url, timeout=timeout, verify=_TLS)
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client


@dataclass
class Seen:
    """Every cookie and code a test saw, for the log sweep at the end of a module."""

    cookies: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        return [*self.cookies, *self.codes]


class CodeTail:
    """The latest code the development sender printed for each address, read incrementally
    from the server's log (re-reading a busy server's whole log per lookup is quadratic)."""

    PREFIX = "otp dev-sender: to="

    def __init__(self, log_path: Path) -> None:
        self._path = log_path
        self._offset = 0
        self._pending = ""
        self.latest: dict[str, str] = {}
        self.count = 0

    def refresh(self) -> None:
        with self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        lines = (self._pending + chunk.decode(errors="replace")).split("\n")
        self._pending = lines.pop()
        for line in lines:
            if line.startswith(self.PREFIX):
                address, _, code = line[len(self.PREFIX) :].partition(" code=")
                self.latest[address] = code
                self.count += 1

    def code_for(self, address: str) -> str | None:
        self.refresh()
        return self.latest.get(address)


class RemoteBrowser:
    """A browser of a real server: it keeps the cookie the server last set, like a browser,
    but every request opens its own connection (so parallel requests spread over workers)."""

    def __init__(self, base_url: str, address: str, seen: Seen | None = None) -> None:
        self.base_url = base_url
        self.address = address
        self.cookie: str | None = None
        self.history: list[str] = []
        self.superseded: list[str] = []
        """Cookies a resend or verify claimed: the answer set a successor, so each is dead."""
        self.seen = seen

    async def post(self, path: str, *, cookie: object = ..., **kwargs: Any) -> httpx.Response:
        """POST `path` with this browser's cookie (or `cookie`, when given) and address."""
        value = self.cookie if cookie is ... else cookie
        headers = {"x-forwarded-for": self.address, **kwargs.pop("headers", {})}
        if isinstance(value, str):
            headers["cookie"] = f"{DEV_COOKIE}={value}"
        async with fresh_client(self.base_url) as client:
            response = await client.post(path, headers=headers, **kwargs)
        new = set_cookie_value(response, DEV_COOKIE)
        if isinstance(new, str) or new is None:
            # Resend and verify only set a cookie after claiming the one sent; create may
            # instead ignore a cookie it cannot use, so its answers prove nothing about it.
            if isinstance(value, str) and path in ("/api/otp/resend", "/api/otp/verify"):
                self.superseded.append(value)
            self.cookie = new
            if new:
                self.history.append(new)
                if self.seen is not None:
                    self.seen.cookies.append(new)
        return response

    async def create(self, credential: str, **kwargs: Any) -> httpx.Response:
        field_name = "phone" if credential.startswith("+") else "email"
        return await self.post("/api/otp/create", json={field_name: credential}, **kwargs)

    async def verify(self, code: str, **kwargs: Any) -> httpx.Response:
        return await self.post("/api/otp/verify", data={"otp": code}, **kwargs)

    async def resend(self, **kwargs: Any) -> httpx.Response:
        return await self.post("/api/otp/resend", **kwargs)


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """A response and how long it took, in seconds."""
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def burst(requests: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Send requests all at once and collect every answer."""
    return list(await asyncio.gather(*requests))


def errors(responses: Iterable[httpx.Response]) -> list[str]:
    """The error code of each response, or 'OK' for a success."""
    return [r.json()["error"] if r.status_code >= 400 else "OK" for r in responses]
