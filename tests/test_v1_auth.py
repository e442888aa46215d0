"""API keys on `/v1` (SPEC §10, SECURITY.md 56): format, digests, scopes, rotation, limits."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver.errors import ConfigError
from otpserver.http.app import ExactRoute, OtpApp
from otpserver.settings.api import ApiSettings, parse_api_keys
from otpserver.v1.auth import address_bucket, authenticate, limits_scope
from otpserver.v1.keys import ApiKeyring, key_digest, new_key
from tests.conftest import ISSUER, AppFactory
from tests.support.fakes import FakeClock

SHOP, SHOP_LINE = new_key("shop", ["challenges"])
SHOP_NEXT, SHOP_NEXT_LINE = new_key("shop", ["challenges"])
RELAY, RELAY_LINE = new_key("relay", ["challenges", "forward_ip"])
TOTP_ONLY, TOTP_ONLY_LINE = new_key("auth", ["totp"])
ALL_KEYS = ",".join([SHOP_LINE, SHOP_NEXT_LINE, RELAY_LINE, TOTP_ONLY_LINE])


async def probe(request: Request) -> Response:
    """A `/v1` route as the real ones begin: authenticate, then name the limit bucket."""
    key = await authenticate(request, "challenges")
    body: dict[str, Any] = await request.json() if await request.body() else {}
    return JSONResponse(
        {"id": key.id, "bucket": address_bucket(request, key, body.get("end_user_ip"))}
    )


@pytest.fixture
def make_api(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> Callable[..., httpx.AsyncClient]:
    """Clients of apps with the probe route and the given `OTP_API_KEYS`."""

    def build(store: str = "memory", keys: str = ALL_KEYS, **api: Any) -> httpx.AsyncClient:
        settings = ApiSettings(issuer=ISSUER, keys=parse_api_keys(keys), **api)
        app = make_app(store, api=settings)
        app.router.routes.append(ExactRoute("/v1/probe", probe, methods=["POST"]))
        return client_for(app)

    return build


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_new_keys_have_the_documented_format() -> None:
    """A new key is otpk_<id>_<43 base62>, and its line lists the SHA-256 of the whole key."""
    key, line = new_key("shop", ["totp", "challenges"])
    assert re.fullmatch(r"otpk_shop_[0-9A-Za-z]{43}", key)
    assert line == f"shop:{hashlib.sha256(key.encode()).hexdigest()}:challenges+totp"
    assert key.rpartition("_")[2] not in line
    assert new_key("shop", ["totp"])[0] != new_key("shop", ["totp"])[0]
    with pytest.raises(ValueError, match="scopes"):
        new_key("shop", ["admin"])
    with pytest.raises(ValueError, match="id"):
        new_key("Shop", ["totp"])


async def test_missing_and_wrong_keys_are_401_with_a_bearer_challenge(
    make_api: Callable[..., httpx.AsyncClient],
) -> None:
    """No header, another scheme, a malformed, unknown or wrong key, or two headers: 401."""
    client = make_api()
    wrong_secret = SHOP[:-4] + ("AAAA" if not SHOP.endswith("AAAA") else "BBBB")
    attempts: list[list[tuple[str, str]]] = [
        [],
        [("authorization", f"Basic {SHOP}")],
        [("authorization", "Bearer otpk_shop_short")],
        [("authorization", f"Bearer {SHOP.replace('shop', 'nope')}")],
        [("authorization", f"Bearer {wrong_secret}")],
        [("authorization", "Bearer " + "x" * 300)],
        [("authorization", f"Bearer {SHOP}"), ("authorization", f"Bearer {SHOP}")],
    ]
    for headers in attempts:
        response = await client.post("/v1/probe", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "API:UNAUTHORIZED"


async def test_a_key_without_the_scope_is_403(make_api: Callable[..., httpx.AsyncClient]) -> None:
    """A valid key that lacks the route's scope is refused with API:FORBIDDEN."""
    response = await make_api().post("/v1/probe", headers=bearer(TOTP_ONLY))
    assert response.status_code == 403
    assert response.json()["error"] == "API:FORBIDDEN"


async def test_two_keys_of_one_id_both_work_until_one_is_removed(
    make_api: Callable[..., httpx.AsyncClient],
) -> None:
    """During a rotation both keys of an id authenticate as that id; afterwards only the
    one still listed does."""
    during = make_api()
    for key in (SHOP, SHOP_NEXT):
        response = await during.post("/v1/probe", headers=bearer(key))
        assert response.json()["id"] == "shop"
    after = make_api(keys=SHOP_NEXT_LINE)
    assert (await after.post("/v1/probe", headers=bearer(SHOP))).status_code == 401
    assert (await after.post("/v1/probe", headers=bearer(SHOP_NEXT))).status_code == 200


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookup compares the presented key's digest with every entry of its id through
    `hmac.compare_digest`, also when an earlier entry already matched."""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("otpserver.v1.keys.hmac.compare_digest", recording)
    ring = ApiKeyring(parse_api_keys(f"{SHOP_LINE},{SHOP_NEXT_LINE}"))
    found = ring.find(SHOP)
    assert found is not None
    assert found.id == "shop"
    assert [a for a, _ in calls] == [key_digest(SHOP)] * 2
    assert {b for _, b in calls} == {key_digest(SHOP), key_digest(SHOP_NEXT)}


@pytest.mark.parametrize(
    "value",
    [
        "shop:abc:challenges",
        f"Shop:{'a' * 64}:challenges",
        f"shop:{'a' * 64}:admin",
        f"shop:{'a' * 64}:",
        f"shop:{'a' * 64}",
        f"shop:{'a' * 64}:totp,shop:{'b' * 64}:totp,shop:{'c' * 64}:totp",
        f"shop:{'a' * 64}:totp,other:{'a' * 64}:totp",
    ],
    ids=["digest", "id", "scope", "no-scope", "fields", "three-per-id", "same-key"],
)
def test_bad_api_key_lists_are_refused(value: str) -> None:
    """Malformed entries, unknown scopes, a third key for one id and one key listed twice
    stop start-up naming OTP_API_KEYS."""
    with pytest.raises(ConfigError, match="OTP_API_KEYS"):
        ApiSettings.from_env({"OTP_API_KEYS": value})


async def test_each_key_has_its_own_rate_limit(
    make_api: Callable[..., httpx.AsyncClient], store: str, clock: FakeClock
) -> None:
    """On either store, a key past its allowance gets 429 RATE:LIMITED with Retry-After,
    another key does not, and the allowance returns when the window ends."""
    client = make_api(store, key_requests=3, key_window_seconds=60)
    for _ in range(3):
        assert (await client.post("/v1/probe", headers=bearer(SHOP))).status_code == 200
    refused = await client.post("/v1/probe", headers=bearer(SHOP))
    assert refused.status_code == 429
    assert refused.json()["error"] == "RATE:LIMITED"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert (await client.post("/v1/probe", headers=bearer(RELAY))).status_code == 200
    clock.advance(61)
    assert (await client.post("/v1/probe", headers=bearer(SHOP))).status_code == 200


async def test_v1_ignores_cookies_and_never_answers_cors(
    make_api: Callable[..., httpx.AsyncClient],
) -> None:
    """A cookie authenticates nothing and no response carries CORS headers or a cookie,
    not even a preflight from an allowed browser origin."""
    client = make_api(keys=ALL_KEYS)
    cookie_only = await client.post("/v1/probe", headers={"cookie": f"otp={SHOP}"})
    assert cookie_only.status_code == 401
    origin = {"origin": "https://otp.example.com"}
    ok = await client.post("/v1/probe", headers={**bearer(SHOP), **origin, "cookie": "otp=x"})
    assert ok.status_code == 200
    preflight = await client.options(
        "/v1/probe", headers={**origin, "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 404
    for response in (cookie_only, ok, preflight):
        assert not any(name.startswith("access-control-") for name in response.headers)
        assert "set-cookie" not in response.headers


async def test_end_user_ip_counts_only_for_forward_ip_keys(
    make_api: Callable[..., httpx.AsyncClient],
) -> None:
    """A `forward_ip` key's end_user_ip is the limit bucket (IPv6 by /64); any other key's
    is ignored for the caller's own address; a malformed one is a 400."""
    client = make_api()
    relayed = await client.post(
        "/v1/probe", headers=bearer(RELAY), json={"end_user_ip": "2001:db8:1:2:3:4:5:6"}
    )
    assert relayed.json() == {"id": "relay", "bucket": "2001:db8:1:2::/64"}
    ignored = await client.post(
        "/v1/probe", headers=bearer(SHOP), json={"end_user_ip": "198.51.100.7"}
    )
    assert ignored.json()["bucket"] == "127.0.0.1"
    bad = await client.post("/v1/probe", headers=bearer(RELAY), json={"end_user_ip": "nope"})
    assert bad.status_code == 400
    assert bad.json()["fields"] == ["end_user_ip"]


async def test_limits_scope_names_the_end_user_as_client() -> None:
    """For scope-reading limiters, a `forward_ip` key's end user becomes the scope's client
    and forwarding headers are dropped; other keys get the scope unchanged."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/probe",
        "headers": [(b"x-forwarded-for", b"203.0.113.9")],
        "client": ("192.0.2.1", 5000),
    }
    request = Request(scope)
    ring = ApiKeyring(parse_api_keys(f"{RELAY_LINE},{SHOP_LINE}"))
    relay, shop = ring.find(RELAY), ring.find(SHOP)
    assert relay is not None
    assert shop is not None
    named = limits_scope(request, relay, "198.51.100.7")
    assert named["client"] == ("198.51.100.7", 0)
    assert named["headers"] == []
    assert limits_scope(request, shop, "198.51.100.7") is scope
