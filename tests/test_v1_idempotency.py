"""`Idempotency-Key` on `/v1` (SPEC §10, SECURITY.md 57): one run, byte-for-byte replays."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from otpserver.errors import IdempotencyKeyInvalid, RateLimited
from otpserver.http.app import ExactRoute, OtpApp
from otpserver.http.openapi import idempotency_parameter
from otpserver.settings.api import ApiSettings, parse_api_keys
from otpserver.stores.markers_redis import MARKER_PREFIX
from otpserver.v1.auth import authenticate
from otpserver.v1.idempotency import MEMO_TTL_SECONDS, idempotency_key, run_idempotent
from otpserver.v1.keys import new_key
from tests.conftest import ISSUER, MASTER_KEY, AppFactory
from tests.support.fakes import FakeClock

SHOP, SHOP_LINE = new_key("shop", ["challenges"])
OTHER, OTHER_LINE = new_key("other", ["challenges"])
NEW_KEY = bytes(range(1, 33))
NEWER_KEY = bytes(range(2, 34))


@dataclass
class Probe:
    """A route that counts its runs, can be held mid-run, and can be told to refuse."""

    runs: int = 0
    refuse: bool = False
    stream: bool = False
    hold: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> Response:
        key = await authenticate(request, "challenges")
        body = await request.body()

        async def handler() -> Response:
            self.runs += 1
            self.entered.set()
            if self.hold is not None:
                await self.hold.wait()
            if self.refuse:
                raise RateLimited(headers={"Retry-After": "1"})
            if self.stream:
                return StreamingResponse(iter([b"{}"]), media_type="application/json")
            # Random content: a replay can only match it by returning the kept bytes.
            return JSONResponse(
                {"run": self.runs, "nonce": os.urandom(8).hex(), "echo": json.loads(body)},
                status_code=201,
                headers={"X-Run": str(self.runs)},
            )

        return await run_idempotent(request, key, body, handler)


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def make_client(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient], probe: Probe
) -> Callable[..., tuple[OtpApp, httpx.AsyncClient]]:
    """An app on the given store with the probe at `/v1/probe` and two API keys."""

    def build(store: str = "memory") -> tuple[OtpApp, httpx.AsyncClient]:
        keys = parse_api_keys(f"{SHOP_LINE},{OTHER_LINE}")
        app = make_app(store, api=ApiSettings(issuer=ISSUER, keys=keys))
        app.router.routes.append(ExactRoute("/v1/probe", probe.endpoint, methods=["POST"]))
        return app, client_for(app)

    return build


def headers(key: str = SHOP, idempotency: str | None = "order-1") -> dict[str, str]:
    found = {"authorization": f"Bearer {key}"}
    if idempotency is not None:
        found["idempotency-key"] = idempotency
    return found


async def test_a_retry_gets_the_first_answer_byte_for_byte(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, store: str
) -> None:
    """On either store, retries with the same key and body replay the first response's
    status, headers and exact bytes, and the handler ran once."""
    _, client = make_client(store)
    first = await client.post("/v1/probe", headers=headers(), json={"email": "a@example.com"})
    assert first.status_code == 201
    for _ in range(3):
        again = await client.post("/v1/probe", headers=headers(), json={"email": "a@example.com"})
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers["x-run"] == "1"
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["idempotent-replayed"] == "true"
    assert probe.runs == 1


async def test_another_body_or_route_with_the_same_key_is_422(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, store: str
) -> None:
    """Reusing an Idempotency-Key with a different body is refused with
    IDEMPOTENCY:MISMATCH and runs nothing."""
    _, client = make_client(store)
    await client.post("/v1/probe", headers=headers(), json={"email": "a@example.com"})
    other = await client.post("/v1/probe", headers=headers(), json={"email": "b@example.com"})
    assert other.status_code == 422
    assert other.json()["error"] == "IDEMPOTENCY:MISMATCH"
    assert probe.runs == 1


async def test_a_retry_while_the_first_runs_is_409(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, store: str
) -> None:
    """While the first request runs, retries get IDEMPOTENCY:IN_FLIGHT; once it ends they
    get its answer, and the handler ran once."""
    _, client = make_client(store)
    probe.hold = asyncio.Event()
    first = asyncio.create_task(client.post("/v1/probe", headers=headers(), json={"n": 1}))
    await asyncio.wait_for(probe.entered.wait(), 5)
    during = await asyncio.gather(
        *(client.post("/v1/probe", headers=headers(), json={"n": 1}) for _ in range(5))
    )
    assert {r.status_code for r in during} == {409}
    assert during[0].json()["error"] == "IDEMPOTENCY:IN_FLIGHT"
    probe.hold.set()
    done = await first
    after = await client.post("/v1/probe", headers=headers(), json={"n": 1})
    assert after.content == done.content
    assert probe.runs == 1


async def test_a_refusal_is_not_kept(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, store: str
) -> None:
    """A refused first attempt releases the key, so the retry runs and its success is kept."""
    _, client = make_client(store)
    probe.refuse = True
    refused = await client.post("/v1/probe", headers=headers(), json={"n": 1})
    assert refused.status_code == 429
    probe.refuse = False
    ok = await client.post("/v1/probe", headers=headers(), json={"n": 1})
    assert ok.status_code == 201
    again = await client.post("/v1/probe", headers=headers(), json={"n": 1})
    assert again.content == ok.content
    assert probe.runs == 2


async def test_a_streamed_answer_is_not_kept(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe
) -> None:
    """An answer without a whole body cannot be replayed: the key is released and a retry
    runs again rather than failing."""
    _, client = make_client()
    probe.stream = True
    for _ in range(2):
        response = await client.post("/v1/probe", headers=headers(), json={"n": 1})
        assert response.status_code == 200
    assert probe.runs == 2


async def test_keys_are_separate_per_api_key_and_absent_keys_run_every_time(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe
) -> None:
    """Another API key's identical Idempotency-Key is its own; without the header every
    request runs."""
    _, client = make_client()
    await client.post("/v1/probe", headers=headers(SHOP), json={"n": 1})
    await client.post("/v1/probe", headers=headers(OTHER), json={"n": 1})
    assert probe.runs == 2
    for _ in range(2):
        await client.post("/v1/probe", headers=headers(idempotency=None), json={"n": 1})
    assert probe.runs == 4


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there", "new\nline"], ids=repr)
async def test_malformed_idempotency_keys_are_400(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, value: str
) -> None:
    """Empty, too long, non-ASCII or control characters: IDEMPOTENCY:INVALID_KEY, no run."""
    _, client = make_client()
    raw = [(b"authorization", f"Bearer {SHOP}".encode()), (b"idempotency-key", value.encode())]
    response = await client.post("/v1/probe", headers=raw, json={"n": 1})
    assert response.status_code == 400
    assert response.json()["error"] == "IDEMPOTENCY:INVALID_KEY"
    assert probe.runs == 0


async def test_memos_expire_after_a_day(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], probe: Probe, clock: FakeClock
) -> None:
    """A retry after 24 hours runs again: the memo is gone."""
    _, client = make_client()
    await client.post("/v1/probe", headers=headers(), json={"n": 1})
    clock.advance(MEMO_TTL_SECONDS + 1)
    await client.post("/v1/probe", headers=headers(), json={"n": 1})
    assert probe.runs == 2


async def test_memos_are_sealed_in_the_store(
    make_client: Callable[..., tuple[OtpApp, httpx.AsyncClient]], redis_url: str
) -> None:
    """Redis holds one memo under an HMAC name, expiring within a day, with neither the
    Idempotency-Key, the key id nor the response in clear."""
    _, client = make_client("redis")
    first = await client.post(
        "/v1/probe", headers=headers(idempotency="order-XYZ"), json={"email": "ada@example.com"}
    )
    plain = redis.Redis.from_url(redis_url)
    try:
        names = list(plain.scan_iter(match=MARKER_PREFIX + b"*"))
        assert len(names) == 1
        value = plain.get(names[0])
        ttl_ms = plain.pttl(names[0])
    finally:
        plain.close()
    assert isinstance(value, bytes)
    assert 0 < ttl_ms <= MEMO_TTL_SECONDS * 1000
    for secret in (b"order-XYZ", b"shop", b"ada@example.com", first.content[:20]):
        assert secret not in value
        assert secret not in names[0]


async def test_a_memo_from_a_dropped_master_key_runs_again(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    probe: Probe,
    redis_url: str,
) -> None:
    """An instance restarted with a new master key and without the previous one cannot open
    a kept answer: the retry runs afresh instead of failing; with the previous key listed,
    it is replayed."""
    keys = parse_api_keys(SHOP_LINE)
    clients = []
    for master_key, previous in ((MASTER_KEY, ()), (NEW_KEY, ()), (NEWER_KEY, (NEW_KEY,))):
        api = ApiSettings(issuer=ISSUER, keys=keys, previous_master_keys=previous)
        app = make_app("redis", master_key=master_key, api=api)
        app.router.routes.append(ExactRoute("/v1/probe", probe.endpoint, methods=["POST"]))
        clients.append(client_for(app))
    first = await clients[0].post("/v1/probe", headers=headers(), json={"n": 1})
    rotated = await clients[1].post("/v1/probe", headers=headers(), json={"n": 1})
    assert rotated.status_code == 201
    assert rotated.content != first.content
    assert probe.runs == 2
    replayed = await clients[2].post("/v1/probe", headers=headers(), json={"n": 1})
    assert replayed.content == rotated.content
    assert probe.runs == 2


@pytest.mark.parametrize(
    "value", ["a", "order 42/x~", "x" * 255, "", "x" * 256, "caf\u00e9", "tab\there"], ids=repr
)
def test_the_documented_header_pattern_is_what_the_server_accepts(value: str) -> None:
    """openapi.json's Idempotency-Key schema accepts exactly the values the server does."""
    schema = idempotency_parameter()["schema"]
    documented = (
        schema["minLength"] <= len(value) <= schema["maxLength"]
        and re.fullmatch(schema["pattern"], value) is not None
    )
    request = Request({"type": "http", "headers": [(b"idempotency-key", value.encode())]})
    try:
        accepted = idempotency_key(request) is not None
    except IdempotencyKeyInvalid:
        accepted = False
    assert documented == accepted
