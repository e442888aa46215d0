"""`Idempotency-Key` on `/v1` (SPEC §10): a retried request gets the first answer back.

A backend that times out on a create or a check cannot know whether the server acted. With
an `Idempotency-Key`, it retries safely: the first request claims a marker named by an HMAC
of (API key id, Idempotency-Key) in one atomic step, so of any number of concurrent
requests with that key exactly one runs the handler; the rest answer 409 while it runs.
Its successful response is then kept, sealed under the at-rest ring and bound to the API
key id, for 24 hours, and a retry with the same route and body gets it back byte for byte,
so the step behind it (a send, an approval and its signed result) never runs twice. The
same key with another body is a client bug: 422.

Only 2xx answers are kept. A refusal (429, 502, 503, ...) changed nothing the client must
not repeat, so the marker is removed and a retry runs afresh.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable

import msgpack
from starlette.requests import Request
from starlette.responses import Response

from otpserver.crypto.atrest import InvalidBlob
from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import (
    IdempotencyInFlight,
    IdempotencyKeyInvalid,
    IdempotencyMismatch,
    StoreUnavailable,
)
from otpserver.v1.keys import ApiKey
from otpserver.v1.services import ApiServices, api_services

log = logging.getLogger("otpserver.v1.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MEMO_TTL_SECONDS = 24 * 3600
"""How long a first answer is kept for retries (SPEC §10: at most 24 hours)."""
IN_FLIGHT_SECONDS = 120.0
"""How long a running request holds its key. Longer than any request can take (the store
and delivery time out well before), short enough that a crashed instance's claim clears."""
MAX_KEY_CHARS = 255
PURPOSE = "idempotency"
_RUNNING = b"\x00"
_DONE = b"\x01"
_FINGERPRINT_BYTES = 32

Handler = Callable[[], Awaitable[Response]]


def idempotency_key(request: Request) -> str | None:
    """The request's `Idempotency-Key` (1-255 printable ASCII), None when absent; a
    malformed or repeated header is 400 `IDEMPOTENCY:INVALID_KEY`."""
    values: list[bytes] = [v for k, v in request.scope["headers"] if k == HEADER]
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not 1 <= len(value) <= MAX_KEY_CHARS:
        raise IdempotencyKeyInvalid()
    if any(not 0x20 <= byte <= 0x7E for byte in value):
        raise IdempotencyKeyInvalid()
    return value.decode("ascii")


def memo_name(secret: bytes, key_id: str, idempotency: str) -> bytes:
    """The marker name: an HMAC, so the store learns neither the key id nor the caller's key."""
    ident = key_id.encode()
    return hmac_sha256(
        secret, b"idempotency\x00" + struct.pack(">H", len(ident)) + ident + idempotency.encode()
    )


def fingerprint(request: Request, body: bytes) -> bytes:
    """What a retry must repeat exactly: the route and the body."""
    return hashlib.sha256(request.url.path.encode() + b"\x00" + body).digest()


async def run_idempotent(request: Request, key: ApiKey, body: bytes, handler: Handler) -> Response:
    """Run `handler` once per (API key, Idempotency-Key); replay its first 2xx answer.

    Without the header, `handler` simply runs. Raises 400 `IDEMPOTENCY:INVALID_KEY`,
    409 `IDEMPOTENCY:IN_FLIGHT`, 422 `IDEMPOTENCY:MISMATCH`, 503 `STORE:UNAVAILABLE`, or
    whatever `handler` raises (after releasing the key).
    """
    idempotency = idempotency_key(request)
    if idempotency is None:
        return await handler()
    services = api_services(request)
    printed = fingerprint(request, body)
    # Memos kept before a master-key rotation live under names keyed by the previous key.
    for secret in services.memo_secrets[1:]:
        earlier = memo_name(secret, key.id, idempotency)
        replay = await _replay(services, key, earlier, printed)
        if replay is not None:
            return replay
    name = memo_name(services.memo_secrets[0], key.id, idempotency)
    if not await services.markers.put_if_absent(name, _RUNNING + printed, IN_FLIGHT_SECONDS):
        replay = await _replay(services, key, name, printed)
        if replay is not None:
            return replay
        if not await services.markers.put_if_absent(name, _RUNNING + printed, IN_FLIGHT_SECONDS):
            raise IdempotencyInFlight()
    try:
        response = await handler()
    except BaseException:
        await _release(services, name)
        raise
    if not 200 <= response.status_code < 300 or not isinstance(
        getattr(response, "body", None), bytes | memoryview
    ):
        # A refusal, or a streamed answer that cannot be kept whole: nothing to replay.
        await _release(services, name)
        return response
    await _remember(services, key, name, printed, response)
    return response


async def _replay(
    services: ApiServices, key: ApiKey, name: bytes, printed: bytes
) -> Response | None:
    """The kept answer for `name`; None when nothing usable is kept (claim it again)."""
    stored = await services.markers.get(name)
    if stored is None:
        return None
    state, stored_print = stored[:1], stored[1 : 1 + _FINGERPRINT_BYTES]
    if stored_print != printed:
        raise IdempotencyMismatch()
    if state == _RUNNING:
        raise IdempotencyInFlight()
    try:
        opened = services.atrest.open(
            PURPOSE, stored[1 + _FINGERPRINT_BYTES :].decode("ascii"), bound_to=key.id.encode()
        )
        status, headers, content = msgpack.unpackb(opened.payload)
    except (InvalidBlob, UnicodeDecodeError, ValueError, TypeError, msgpack.UnpackException):
        # Sealed under a master key no longer configured: the first answer is lost. The
        # steps behind it are single-use, so running again cannot repeat them.
        log.warning("an idempotency memo could not be opened; the request runs again")
        await services.markers.delete(name)
        return None
    response = Response(content, status_code=int(status))
    response.raw_headers = [(bytes(k), bytes(v)) for k, v in headers]
    response.raw_headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    return response


async def _remember(
    services: ApiServices, key: ApiKey, name: bytes, printed: bytes, response: Response
) -> None:
    """Keep `response` sealed for retries; a store failure here loses only the memo."""
    content = bytes(response.body)
    record = msgpack.packb([response.status_code, [list(h) for h in response.raw_headers], content])
    sealed = services.atrest.seal(PURPOSE, record, bound_to=key.id.encode(), now=services.clock())
    try:
        await services.markers.put(name, _DONE + printed + sealed.encode("ascii"), MEMO_TTL_SECONDS)
    except StoreUnavailable:
        # The work is done and its answer goes out; a retry then finds the in-flight claim
        # until it lapses, and after that the spent single-use state answers it.
        log.warning("could not keep an idempotent answer: the store did not answer")


async def _release(services: ApiServices, name: bytes) -> None:
    try:
        await services.markers.delete(name)
    except StoreUnavailable:
        log.warning("could not release an idempotency key: it lapses by itself")
