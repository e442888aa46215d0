"""`GET /health` (liveness) and `GET /health/ready` (readiness), for load balancers.

Liveness says the process serves HTTP and never consults the store, so an orchestrator does
not restart healthy processes during a store outage. Readiness says requests can succeed
now: the store answered within its timeout and the key that seals new cookies loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver.crypto.keyring import KeyRing
from otpserver.errors import OtpError
from otpserver.observability import metrics
from otpserver.settings.environment import Settings
from otpserver.stores.base import IdStore, KeyStore

log = logging.getLogger("otpserver.health")

PROBE_ID_BYTES = 16


@dataclass(frozen=True, slots=True)
class Readiness:
    """Asks the stores one question each and loads the current key, within a deadline."""

    ids: IdStore
    key_store: KeyStore
    keyring: KeyRing
    timeout_seconds: float
    clock: Callable[[], float] = time.time

    @classmethod
    def of(
        cls, ids: IdStore, key_store: KeyStore, keyring: KeyRing, settings: Settings
    ) -> Readiness:
        """Probes bounded by the store timeout: each of the three round trips has its own."""
        return cls(ids, key_store, keyring, 3 * settings.store_timeout_seconds)

    async def problem(self) -> str | None:
        """None when ready, else a short reason (no secret, no address)."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._probe()
        except TimeoutError:
            return "store timeout"
        except OtpError as error:
            return error.code

    async def _probe(self) -> str | None:
        now = self.clock()
        # A random ID nobody holds: consuming it changes nothing, and proves the ID store
        # answers; reading a key proves the key store does (they may be different stores).
        await self.ids.consume(os.urandom(PROBE_ID_BYTES))
        key_id = self.keyring.epoch(now)
        await self.key_store.get(key_id)
        current, _ = await self.keyring.current(now)
        metrics.current_key(current)
        return None


async def health(request: Request) -> Response:
    """Liveness: 200 while the process serves requests (the store is not consulted)."""
    return JSONResponse({"status": "ok"})


def ready_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    """`GET /health/ready`: 200 `{"status": "ready"}`, else 503 with the reason."""

    async def ready(request: Request) -> Response:
        problem = await readiness.problem()
        if problem is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)

    return ready
