"""A minimal browser for API tests: it keeps the OTP cookie itself so tests can replay old ones."""

from __future__ import annotations

from typing import Any

import httpx

PRODUCTION_COOKIE = "__Host-otp"
_KEEP = object()


def set_cookie_value(response: httpx.Response, name: str) -> str | object | None:
    """The value a response sets for `name`: a string, None when cleared, `_KEEP` if untouched."""
    result: str | object | None = _KEEP
    for header in response.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key != name:
            continue
        value, _, attributes = rest.partition(";")
        result = None if "max-age=0" in attributes.lower() else value
    return result


class Browser:
    """Sends exactly the cookie it chooses, and follows `Set-Cookie` like a browser."""

    def __init__(self, client: httpx.AsyncClient, cookie_name: str = PRODUCTION_COOKIE) -> None:
        self.client = client
        self.cookie_name = cookie_name
        self.cookie: str | None = None
        self.history: list[str] = []

    async def post(
        self,
        path: str,
        *,
        cookie: str | object | None = _KEEP,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        value = self.cookie if cookie is _KEEP else cookie
        sent_headers = dict(headers or {})
        if value is not None:
            sent_headers["cookie"] = f"{self.cookie_name}={value}"
        self.client.cookies.clear()
        response = await self.client.post(path, headers=sent_headers, **kwargs)
        self.client.cookies.clear()
        new = set_cookie_value(response, self.cookie_name)
        if new is not _KEEP:
            self.cookie = new if isinstance(new, str) else None
            if isinstance(new, str):
                self.history.append(new)
        return response

    async def create(self, email: str = "ada@example.com", **kwargs: Any) -> httpx.Response:
        return await self.post("/api/otp/create", json={"email": email}, **kwargs)

    async def verify(self, code: str, **kwargs: Any) -> httpx.Response:
        return await self.post("/api/otp/verify", data={"otp": code}, **kwargs)

    async def resend(self, **kwargs: Any) -> httpx.Response:
        return await self.post("/api/otp/resend", **kwargs)


def wrong(code: str) -> str:
    """A code of the same shape that is certainly not `code`."""
    return "".join("1" if c == "0" else "0" for c in code)
