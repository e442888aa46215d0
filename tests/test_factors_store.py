"""What the second factors leave in the store: HMAC-named markers holding nothing secret."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import redis

from otpserver.factors.service import name
from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiSettings
from otpserver.stores.markers_redis import MARKER_PREFIX
from tests.conftest import ISSUER, AppFactory
from tests.support.factors import SUBJECT, api_keys, app_code, call
from tests.support.fakes import FakeClock
from tests.support.hygiene import encodings


def raw(value: object) -> bytes:
    """A reply of the synchronous Redis client, which answers bytes without decoding."""
    assert isinstance(value, bytes)
    return value


def test_marker_names_never_collide_across_labels_or_splits() -> None:
    """Moving bytes between the label and the parts, or between parts, changes the name."""
    key = bytes(32)
    names = {
        name(key, b"ab", b"c"),
        name(key, b"a", b"bc"),
        name(key, b"a", b"b", b"c"),
        name(key, b"abc"),
        name(bytes([1] * 32), b"ab", b"c"),
    }
    assert len(names) == 5


async def test_the_store_holds_no_subject_code_secret_or_blob(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    clock: FakeClock,
    redis_url: str,
) -> None:
    """After every second-factor operation on Redis, no key or value holds the subject, a
    TOTP secret or code, a backup code, or any part of a blob."""
    keys = api_keys("totp", "backup_codes", "devices")
    client: httpx.AsyncClient = client_for(
        make_app("redis", api=ApiSettings(issuer=ISSUER, keys=keys))
    )
    started = await call(
        client, "/v1/totp/enrolments", {"subject": SUBJECT, "account": "ada@example.com"}
    )
    secret = started["secret"]
    codes = [app_code(secret, clock.now)]
    confirmed = await call(
        client,
        "/v1/totp/enrolments/confirm",
        {"subject": SUBJECT, "pending": started["pending"], "code": codes[0]},
    )
    clock.advance(30)
    codes.append(app_code(secret, clock.now))
    await call(
        client,
        "/v1/totp/verify",
        {"subject": SUBJECT, "enrolment": confirmed["enrolment"], "code": "000000"},
    )
    await call(
        client,
        "/v1/totp/verify",
        {"subject": SUBJECT, "enrolment": confirmed["enrolment"], "code": codes[1]},
    )
    made = await call(client, "/v1/backup-codes", {"subject": SUBJECT, "count": 5})
    await call(
        client,
        "/v1/backup-codes/redeem",
        {"subject": SUBJECT, "set": made["set"], "code": made["codes"][0]},
    )
    device = await call(client, "/v1/devices/trust", {"subject": SUBJECT})
    await call(client, "/v1/devices/revoke", {"subject": SUBJECT, "deviceId": device["deviceId"]})
    await call(client, "/v1/devices/revoke", {"subject": SUBJECT})

    store = redis.Redis.from_url(redis_url)
    parts: list[bytes] = []
    for key in store.scan_iter():
        parts.append(raw(key))
        kind = store.type(key)
        if kind == b"string":
            parts.append(raw(store.get(key)))
        elif kind == b"hash":
            parts += [raw(k) + raw(v) for k, v in store.hgetall(key).items()]
    store.close()
    dump = b"\n".join(parts)
    assert MARKER_PREFIX in dump
    forbidden = [SUBJECT, secret, *codes, *made["codes"]]
    forbidden += [c.replace("-", "") for c in made["codes"]]
    forbidden += encodings(base64.b32decode(secret + "=" * (-len(secret) % 8)))
    for blob in (started["pending"], confirmed["enrolment"], made["set"], device["device"]):
        forbidden += [blob[i : i + 16] for i in range(0, len(blob) - 16, 16)]
    text = dump.decode("latin-1")
    assert [item for item in forbidden if item in text] == []
