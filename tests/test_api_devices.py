"""Trusted devices over `/v1` (SPEC §15) on both stores: expiry, revocation, generation."""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiSettings
from otpserver.settings.factors import FactorSettings
from tests.conftest import ISSUER, MASTER_KEY, AppFactory
from tests.support.factors import SUBJECT, api_keys, auth, call
from tests.support.fakes import FakeClock
from tests.support.hygiene import assert_no_leaks, captured_records

TRUST = "/v1/devices/trust"
CHECK = "/v1/devices/check"
REVOKE = "/v1/devices/revoke"
DAY = 86400
OTHER_MASTER_KEY = bytes(range(32, 64))

Clients = Callable[[OtpApp], httpx.AsyncClient]


def iso(instant: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(instant)))


@pytest.fixture
def device_app(make_app: AppFactory, store: str) -> Callable[..., OtpApp]:
    """Builds apps on the store under test whose key has the `devices` scope."""

    def build(**settings: Any) -> OtpApp:
        settings.setdefault("api", ApiSettings(issuer=ISSUER, keys=api_keys("devices")))
        return make_app(store, **settings)

    return build


@pytest.fixture
def client(device_app: Callable[..., OtpApp], client_for: Clients) -> httpx.AsyncClient:
    """A client of a production app on the store under test."""
    return client_for(device_app())


async def check(client: httpx.AsyncClient, device: str, **extra: Any) -> Any:
    return await call(client, CHECK, {"subject": SUBJECT, "device": device, **extra})


async def test_a_trusted_device_checks_until_it_expires(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Trust lasts 30 days by default: trusted a second before, expired at the instant."""
    response = await client.post(TRUST, json={"subject": SUBJECT}, headers=auth())
    assert response.status_code == 201
    trusted = response.json()
    assert trusted["expires"] == iso(clock.now + 30 * DAY)
    answer = await check(client, trusted["device"])
    assert answer == {
        "trusted": True,
        "deviceId": trusted["deviceId"],
        "expires": trusted["expires"],
    }
    clock.advance(30 * DAY - 1)
    assert (await check(client, trusted["device"]))["trusted"] is True
    clock.advance(1)
    assert await check(client, trusted["device"]) == {"trusted": False, "reason": "expired"}


async def test_days_are_bounded_by_the_configured_maximum(
    device_app: Callable[..., OtpApp], client_for: Clients, clock: FakeClock
) -> None:
    """`days` sets the expiry; above OTP_TRUSTED_DEVICE_DAYS (or 30) it is a 400."""
    client = client_for(device_app(factors=FactorSettings(trusted_device_days=10)))
    week = await call(client, TRUST, {"subject": SUBJECT, "days": 7})
    assert week["expires"] == iso(clock.now + 7 * DAY)
    default = await call(client, TRUST, {"subject": SUBJECT})
    assert default["expires"] == iso(clock.now + 10 * DAY)
    for days in (11, 31, 0):
        response = await client.post(TRUST, json={"subject": SUBJECT, "days": days}, headers=auth())
        assert (response.status_code, response.json()["error"]) == (400, "BODY:INVALID")


async def test_revoking_one_device_leaves_the_others(
    client: httpx.AsyncClient,
) -> None:
    """A revoked device answers revoked; another device of the subject stays trusted."""
    first = await call(client, TRUST, {"subject": SUBJECT})
    second = await call(client, TRUST, {"subject": SUBJECT})
    assert await call(client, REVOKE, {"subject": SUBJECT, "deviceId": first["deviceId"]}) == {
        "revoked": first["deviceId"]
    }
    assert await check(client, first["device"]) == {"trusted": False, "reason": "revoked"}
    assert (await check(client, second["device"]))["trusted"] is True


async def test_revoking_all_covers_every_earlier_device_only(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Revoke-all refuses every device trusted before it, and none trusted after."""
    first = await call(client, TRUST, {"subject": SUBJECT})
    second = await call(client, TRUST, {"subject": SUBJECT})
    other = await call(client, TRUST, {"subject": "user-2"})
    clock.advance(1)
    assert await call(client, REVOKE, {"subject": SUBJECT}) == {"revoked": "all"}
    for device in (first, second):
        assert await check(client, device["device"]) == {"trusted": False, "reason": "revoked"}
    assert (await call(client, CHECK, {"subject": "user-2", "device": other["device"]}))[
        "trusted"
    ] is True
    clock.advance(1)
    later = await call(client, TRUST, {"subject": SUBJECT})
    assert (await check(client, later["device"]))["trusted"] is True
    clock.advance(29 * DAY)
    assert await check(client, first["device"]) == {"trusted": False, "reason": "revoked"}


async def test_revoking_an_id_that_names_no_device_is_a_400(client: httpx.AsyncClient) -> None:
    """A `deviceId` that no trust could have issued (mistyped, `all`, one character off the
    canonical form) is refused with 400 instead of answering "revoked" for nothing."""
    trusted = await call(client, TRUST, {"subject": SUBJECT})
    device_id = trusted["deviceId"]
    # 16 bytes in 22 characters: the last character's 4 low bits are padding, zero in the
    # canonical form; setting one names the same bytes in a form never issued.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    off_canonical = device_id[:-1] + alphabet[alphabet.index(device_id[-1]) ^ 1]
    for bad in ("all", device_id[:-1], device_id + "A", "!" * 22, off_canonical):
        body = {"subject": SUBJECT, "deviceId": bad}
        response = await client.post(REVOKE, json=body, headers=auth())
        assert (response.status_code, response.json()["error"]) == (400, "BODY:INVALID"), bad
    assert (await check(client, trusted["device"]))["trusted"] is True


async def test_a_higher_generation_revokes_older_tokens(client: httpx.AsyncClient) -> None:
    """A token of generation 3 is trusted when checked at 3 or below, revoked above."""
    trusted = await call(client, TRUST, {"subject": SUBJECT, "generation": 3})
    assert (await check(client, trusted["device"], generation=3))["trusted"] is True
    assert (await check(client, trusted["device"], generation=2))["trusted"] is True
    assert (await check(client, trusted["device"]))["trusted"] is True
    assert await check(client, trusted["device"], generation=4) == {
        "trusted": False,
        "reason": "revoked",
    }


async def test_tokens_of_another_subject_kind_or_tampered_are_invalid(
    client: httpx.AsyncClient,
) -> None:
    """Another subject's token, a tampered one, junk or another kind of blob: invalid."""
    trusted = await call(client, TRUST, {"subject": SUBJECT})
    device = trusted["device"]
    invalid = {"trusted": False, "reason": "invalid"}
    assert await call(client, CHECK, {"subject": "user-2", "device": device}) == invalid
    flipped = device[:20] + ("A" if device[20] != "A" else "B") + device[21:]
    for bad in (flipped, device[:-2], device + "A", "!" + device, "x"):
        assert await check(client, bad) == invalid, bad


async def test_revocation_on_one_instance_holds_on_another(
    make_app: AppFactory, client_for: Clients
) -> None:
    """Two instances on one Redis: a device revoked through one is refused by the other."""
    settings = {"api": ApiSettings(issuer=ISSUER, keys=api_keys("devices"))}
    first = client_for(make_app("redis", **settings))
    second = client_for(make_app("redis", **settings))
    trusted = await call(first, TRUST, {"subject": SUBJECT})
    assert (await check(second, trusted["device"]))["trusted"] is True
    await call(first, REVOKE, {"subject": SUBJECT, "deviceId": trusted["deviceId"]})
    assert await check(second, trusted["device"]) == {"trusted": False, "reason": "revoked"}


async def test_revoking_all_on_one_instance_holds_on_another(
    make_app: AppFactory, client_for: Clients, clock: FakeClock
) -> None:
    """Two instances on one Redis: revoke-all through one refuses, on the other, every device
    trusted before it, and a device trusted afterwards is trusted on both."""
    settings = {"api": ApiSettings(issuer=ISSUER, keys=api_keys("devices"))}
    first = client_for(make_app("redis", **settings))
    second = client_for(make_app("redis", **settings))
    earlier = await call(second, TRUST, {"subject": SUBJECT})
    clock.advance(1)
    assert await call(first, REVOKE, {"subject": SUBJECT}) == {"revoked": "all"}
    assert await check(second, earlier["device"]) == {"trusted": False, "reason": "revoked"}
    clock.advance(1)
    later = await call(second, TRUST, {"subject": SUBJECT})
    for instance in (first, second):
        assert (await check(instance, later["device"]))["trusted"] is True


async def test_trust_and_revoke_are_audited_without_secrets(client: httpx.AsyncClient) -> None:
    """Trusting and revoking emit `device.trusted` and `device.revoked` naming the device id,
    and nothing logged carries the device token or the subject."""
    with captured_records() as capture:
        trusted = await call(client, TRUST, {"subject": SUBJECT})
        await check(client, trusted["device"])
        await call(client, REVOKE, {"subject": SUBJECT, "deviceId": trusted["deviceId"]})
        await check(client, trusted["device"])
    trusted_lines = [line for line in capture.lines if '"type":"device.trusted"' in line]
    revoked_lines = [line for line in capture.lines if '"type":"device.revoked"' in line]
    assert len(trusted_lines) == len(revoked_lines) == 1, capture.text
    for line in (*trusted_lines, *revoked_lines):
        assert trusted["deviceId"] in line
        assert "subject_hmac" in line
    assert_no_leaks(capture.text, [trusted["device"], SUBJECT])


async def test_rotation_reseals_device_tokens(
    device_app: Callable[..., OtpApp], client_for: Clients, store: str
) -> None:
    """After a master-key rotation an old token is trusted and re-sealed; without the
    previous key it is invalid."""
    old = client_for(device_app())
    trusted = await call(old, TRUST, {"subject": SUBJECT})
    rotated = client_for(
        device_app(
            master_key=OTHER_MASTER_KEY,
            api=ApiSettings(
                issuer=ISSUER, keys=api_keys("devices"), previous_master_keys=(MASTER_KEY,)
            ),
        )
    )
    answer = await check(rotated, trusted["device"])
    assert answer["trusted"] is True
    assert answer["device"] != trusted["device"]
    forgotten = client_for(
        device_app(
            master_key=OTHER_MASTER_KEY,
            api=ApiSettings(issuer=ISSUER, keys=api_keys("devices")),
        )
    )
    assert await check(forgotten, trusted["device"]) == {"trusted": False, "reason": "invalid"}
    resealed = await check(forgotten, answer["device"])
    assert resealed["trusted"] is True
    assert "device" not in resealed


async def test_devices_need_their_scope(
    make_app: AppFactory, client_for: Clients, store: str
) -> None:
    """A key without the `devices` scope is refused with 403."""
    client = client_for(make_app(store, api=ApiSettings(issuer=ISSUER, keys=api_keys())))
    response = await client.post(TRUST, json={"subject": SUBJECT}, headers=auth())
    assert (response.status_code, response.json()["error"]) == (403, "API:FORBIDDEN")
