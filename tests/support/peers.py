"""Clients that reach an app from chosen socket addresses, for per-address limit tests."""

from __future__ import annotations

import httpx

from otpserver.http.app import OtpApp
from tests.support.api import Browser


class Peers:
    """Makes https clients whose socket peer is a given address; closes them all at the end."""

    def __init__(self) -> None:
        self._clients: list[httpx.AsyncClient] = []

    def client(self, app: OtpApp, address: str) -> httpx.AsyncClient:
        """A client of `app` connecting from `address`."""
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=(address, 40000)
        )
        client = httpx.AsyncClient(transport=transport, base_url="https://otp.example.com")
        self._clients.append(client)
        return client

    def browser(self, app: OtpApp, address: str) -> Browser:
        """A fresh browser (no cookie) of `app` at `address`, with a client of its own."""
        return Browser(self.client(app, address))

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def address(index: int) -> str:
    """A distinct address for each index below 512, each in a /24 network of its own, so
    per-network limits treat every index as an unrelated client."""
    return f"198.51.{index}.7" if index < 256 else f"203.0.{index - 256}.7"
