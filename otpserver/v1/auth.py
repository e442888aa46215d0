"""Authenticating `/v1` calls: the bearer API key, its scope, and its own rate limit.

`authenticate(request, scope)` or `gated_key(request, scope)` is the first line of every
`/v1` route. Both read only the `Authorization` header (never a cookie: `/v1` is for
servers, and a browser's ambient credentials must not reach it) and refuse with 401 or 403.
Every request is charged once against the key's own per-window allowance, on top of every
limit the route itself charges: `authenticate` charges at once, in a round trip of its own;
`gated_key` hands the charge to the route's one store step as its gate, and charges it on
its own, on the way out, if the request ended without that step. The presented key is never
logged, nor put into any error.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

from starlette.requests import Request
from starlette.types import Scope

from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import ApiForbidden, ApiUnauthorized, BodyInvalid, RateLimited
from otpserver.limits.clientaddr import client_address, limit_bucket, parse_address
from otpserver.stores.base import Gate
from otpserver.stores.counters import Counter, Decision, retry_after_seconds
from otpserver.v1.keys import ApiKey
from otpserver.v1.services import ApiServices, api_services

log = logging.getLogger("otpserver.v1.auth")

__all__ = ["ApiKey", "GatedKey", "address_bucket", "authenticate", "gated_key", "limits_scope"]

MAX_AUTHORIZATION_CHARS = 256


def presented_key(request: Request) -> str | None:
    """The key of a single `Authorization: Bearer <key>` header, else None."""
    values = [v for k, v in request.scope["headers"] if k == b"authorization"]
    if len(values) != 1 or len(values[0]) > MAX_AUTHORIZATION_CHARS:
        return None
    scheme, _, key = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


async def authenticate(request: Request, scope: str) -> ApiKey:
    """The calling key, if it may use `scope` and has allowance left in its window, charged
    now: for routes whose work is not one store step.

    Raises 401 `API:UNAUTHORIZED` (with `WWW-Authenticate: Bearer`), 403 `API:FORBIDDEN`,
    429 `RATE:LIMITED` (with `Retry-After`), or 503 `STORE:UNAVAILABLE`.
    """
    services = api_services(request)
    key = authorised(request, scope, services)
    await charge_key(services, key)
    return key


class GatedKey(NamedTuple):
    """The calling key, and its allowance as the gate of the request's one store step."""

    key: ApiKey
    gate: Gate


@asynccontextmanager
async def gated_key(request: Request, scope: str) -> AsyncIterator[GatedKey]:
    """The calling key, if it may use `scope`, with its charge still to make: for routes
    whose work is one store step, which charges the gate first, in the same round trip.

    Whatever ends the block without that step (a bad body or token, a refusal decided
    before the store, an exception) charges the key here, on the way out, so every request
    counts once, as with `authenticate`; the gate hands its counter out only once, so none
    counts twice. A refused charge, either way, is the answer: 429 `RATE:LIMITED`.
    """
    services = api_services(request)
    key = authorised(request, scope, services)
    gate = Gate(key_counter(services, key), lambda decision: key_refused(services, key, decision))
    try:
        yield GatedKey(key, gate)
    finally:
        counter = gate.take()
        if counter is not None:
            await charge_key(services, key, counter)


def authorised(request: Request, scope: str, services: ApiServices) -> ApiKey:
    """The key the request presents, if it may use `scope` and is not known to be over its
    allowance. Raises 401, 403, or 429 when this worker saw the key refused in the current
    window: no store call and no work for a key that would be refused anyway, which matters
    where the work comes before the step that charges it (a backup code's scrypt)."""
    presented = presented_key(request)
    key = None if presented is None else services.keys.find(presented)
    if key is None:
        raise ApiUnauthorized()
    if scope not in key.scopes:
        raise ApiForbidden()
    wait_ms = services.refused_keys.wait_ms(key.id, int(services.clock() * 1000))
    if wait_ms:
        raise rate_limited(Decision(allowed=False, retry_after_ms=wait_ms))
    return key


def key_counter(services: ApiServices, key: ApiKey) -> Counter:
    """`key`'s own allowance: requests per window, whatever the route."""
    return Counter(
        kind="api_key",
        key=hmac_sha256(services.limit_secret, b"api-key\x00" + key.id.encode()),
        limit=services.key_requests,
        window_ms=services.key_window_seconds * 1000,
    )


async def charge_key(services: ApiServices, key: ApiKey, counter: Counter | None = None) -> None:
    """Count one request against `key`'s own allowance; refuse when it is spent."""
    now_ms = int(services.clock() * 1000)
    decision = await services.counters.hit([counter or key_counter(services, key)], now_ms)
    if not decision.allowed:
        raise key_refused(services, key, decision)


def key_refused(services: ApiServices, key: ApiKey, decision: Decision) -> RateLimited:
    """The answer to a refused charge of `key`, remembered until the refusal ends."""
    log.info("rate limited: api key %s refused by api_key", key.id)
    now_ms = int(services.clock() * 1000)
    services.refused_keys.remember(key.id, now_ms + decision.retry_after_ms)
    return rate_limited(decision)


def rate_limited(decision: Decision) -> RateLimited:
    retry_after = retry_after_seconds(decision)
    return RateLimited(
        extra={"retryAfter": retry_after},
        headers={"Retry-After": str(retry_after), "RateLimit": f'"otp";r=0;t={retry_after}'},
        refused_by=("api_key",),
    )


def end_user_address(
    key: ApiKey, end_user_ip: str | None
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The end user's address a `forward_ip` key names; None when the key may not name one
    (the field is then ignored) or named none. A malformed address is a 400."""
    if end_user_ip is None or "forward_ip" not in key.scopes:
        return None
    address = parse_address(end_user_ip) if len(end_user_ip) <= 64 else None
    if address is None or end_user_ip.strip() != end_user_ip:
        raise BodyInvalid(
            "end_user_ip must be an IPv4 or IPv6 address.", extra={"fields": ["end_user_ip"]}
        )
    return address


def address_bucket(request: Request, key: ApiKey, end_user_ip: str | None) -> str:
    """The bucket per-address limits count for this call: the end user's address for keys
    with `forward_ip` that name one, else the calling server's own address (trusted-proxy
    rules applied)."""
    address = end_user_address(key, end_user_ip)
    if address is None:
        client = request.scope.get("client")
        peer = str(client[0]) if client else None
        address = client_address(
            peer, request.scope.get("headers", ()), api_services(request).proxies
        )
    return limit_bucket(address)


def limits_scope(request: Request, key: ApiKey, end_user_ip: str | None) -> Scope:
    """A copy of the request's ASGI scope whose client is the address limits should count,
    for limiters that read the address from a scope (`Limiter.address_bucket`)."""
    address = end_user_address(key, end_user_ip)
    if address is None:
        return request.scope
    # No forwarding headers: the named end user is the client, whoever relayed the call.
    return {
        **request.scope,
        "client": (str(address), 0),
        "headers": [
            (k, v)
            for k, v in request.scope["headers"]
            if k not in (b"x-forwarded-for", b"forwarded")
        ],
    }
