"""The hooks shipped in `custom/`: what each file decides, checked on its own.

A fork that edits `custom/` edits these tests with it; the core's suite (everything else
under `tests/`) runs on hooks of its own and never needs to change.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from starlette.requests import Request

import custom
from custom.credential import CreateRequest
from custom.final import final
from custom.limits import LIMITS
from custom.otp import POLICY, generate_code
from custom.send import make_sender
from custom.stores import make_counter_store, make_id_store, make_key_store, make_marker_store
from otpserver import (
    ConfigError,
    Credential,
    LimitPolicy,
    MemoryCounterStore,
    MemoryIdStore,
    MemoryKeyStore,
    MemoryMarkerStore,
    OtpPolicy,
    RedisCounterStore,
    RedisIdStore,
    RedisKeyStore,
    RedisMarkerStore,
    Settings,
    VerifiedCredential,
)
from otpserver.delivery import OutboxSender


def test_the_credential_schema_takes_an_email_or_a_phone() -> None:
    """Email is lower-cased, a phone number becomes E.164, and the locale is passed on."""
    body = CreateRequest.model_validate({"email": "Ada@Example.COM", "locale": "fr"})
    assert body.credential() == Credential(channel="email", address="ada@example.com")
    assert body.requested_locale() == "fr"
    phone = CreateRequest.model_validate({"phone": "+1 415 555 0100"})
    assert phone.credential() == Credential(channel="phone", address="+14155550100")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "ada@example.com", "phone": "+14155550100"},
        {"email": "ada@example.com", "admin": True},
        {"email": "not an address"},
        {"phone": "4155550100"},
        {"email": 5},
    ],
)
def test_the_credential_schema_refuses_the_rest(body: dict[str, object]) -> None:
    """Neither or both credentials, unknown keys, bad addresses and wrong types are refused."""
    with pytest.raises(ValidationError):
        CreateRequest.model_validate(body)


def test_the_policy_and_limits_are_the_shipped_defaults() -> None:
    """`custom/otp.py` and `custom/limits.py` start from the core's defaults, which pass."""
    assert OtpPolicy().checked() == POLICY
    assert LimitPolicy().checked() == LIMITS


def test_codes_have_the_policys_length_and_alphabet() -> None:
    """`generate_code` draws exactly `length` characters of the alphabet."""
    for policy in (POLICY, OtpPolicy(length=8, alphabet="ACDEFHJKMNPRTUVWXY3479")):
        codes = {generate_code(policy) for _ in range(200)}
        assert all(len(code) == policy.length for code in codes)
        assert set("".join(codes)) <= set(policy.alphabet)
        assert len(codes) > 150


async def test_final_answers_with_the_verified_credential() -> None:
    """The shipped final hook returns 200 JSON naming the verified credential and its result."""
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    verified = VerifiedCredential(
        Credential("email", "ada@example.com"), verified_at=0.0, result="signed.result.jws"
    )
    response = await final(verified, request)
    assert response.status_code == 200
    assert json.loads(bytes(response.body)) == {
        "verified": True,
        "credential": "ada@example.com",
        "channel": "email",
        "result": "signed.result.jws",
    }


async def test_send_builds_from_settings() -> None:
    """`make_sender` builds the default sender from the settings' delivery part."""
    assert isinstance(make_sender(Settings(env="development")), OutboxSender)
    with pytest.raises(ConfigError, match="OTP_EMAIL_PROVIDER"):
        make_sender(Settings(env="production"))


async def test_stores_follow_the_store_url(redis_url: str) -> None:
    """Every factory in `custom/stores.py` picks memory for memory:// and Redis otherwise."""
    memory = Settings(store_url="memory://")
    on_redis = Settings(store_url=redis_url)
    factories = (
        (make_id_store, MemoryIdStore, RedisIdStore),
        (make_key_store, MemoryKeyStore, RedisKeyStore),
        (make_counter_store, MemoryCounterStore, RedisCounterStore),
        (make_marker_store, MemoryMarkerStore, RedisMarkerStore),
    )
    for factory, in_memory, in_redis in factories:
        local, shared = factory(memory), factory(on_redis)
        assert isinstance(local, in_memory)
        assert isinstance(shared, in_redis)
        await local.aclose()
        await shared.aclose()


def test_the_hooks_bundle_wires_every_file() -> None:
    """`custom.HOOKS` is made of the functions and values of the files beside it."""
    hooks = custom.HOOKS
    assert (hooks.credential_body, hooks.policy, hooks.limits) == (CreateRequest, POLICY, LIMITS)
    assert (hooks.generate_code, hooks.final, hooks.make_sender) == (
        generate_code,
        final,
        make_sender,
    )
    assert (hooks.make_id_store, hooks.make_key_store) == (make_id_store, make_key_store)
    assert (hooks.make_counter_store, hooks.make_marker_store) == (
        make_counter_store,
        make_marker_store,
    )
