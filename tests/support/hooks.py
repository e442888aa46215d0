"""The hooks the core's own tests run against, so the suite survives any fork of `custom/`.

They behave like the hooks shipped in `custom/` today (email or E.164 phone, the default
policy and limits, the development sender, a JSON final answer with the signed result,
memory or Redis stores by URL), but they are the tests' own: a fork that accepts one email
domain, sets a session cookie after a verify or adds a language changes `custom/` and
nothing here. The tests of the shipped hooks themselves live in `tests/custom/`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver import (
    CounterStore,
    Credential,
    CredentialBody,
    EmailAddress,
    Hooks,
    IdStore,
    KeyStore,
    LimitPolicy,
    MarkerStore,
    MemoryCounterStore,
    MemoryIdStore,
    MemoryKeyStore,
    MemoryMarkerStore,
    OtpPolicy,
    PhoneNumber,
    RedisCounterStore,
    RedisIdStore,
    RedisKeyStore,
    RedisMarkerStore,
    Sender,
    Settings,
    VerifiedCredential,
    build_sender,
    random_code,
    redis_client,
)

Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$", max_length=35)]


class EmailOrPhone(CredentialBody):
    """`{"email": ...}` or `{"phone": ...}`, with an optional `locale`; nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    locale: Locale | None = None

    @model_validator(mode="after")
    def exactly_one_credential(self) -> EmailOrPhone:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email or phone")
        return self

    def credential(self) -> Credential:
        if self.email is not None:
            return Credential(channel="email", address=self.email)
        return Credential(channel="phone", address=str(self.phone))

    def requested_locale(self) -> str | None:
        return self.locale


def generate_code(policy: OtpPolicy) -> str:
    """A uniformly random code of the policy's length and alphabet."""
    return random_code(policy.length, policy.alphabet)


async def verified_json(verified: VerifiedCredential, request: Request) -> Response:
    """200 `{"verified": true, "credential": ..., "channel": ..., "result": ...}`: the
    signed result is the core's, so the core suite's own final hook hands it on too."""
    return JSONResponse(
        {
            "verified": True,
            "credential": verified.credential.address,
            "channel": verified.credential.channel,
            "result": verified.result,
        }
    )


def make_sender(settings: Settings) -> Sender:
    """The core's providers as the environment chooses them (the console in development)."""
    return build_sender(settings.delivery, development=settings.is_development)


def make_id_store(settings: Settings) -> IdStore:
    if settings.uses_memory_store:
        return MemoryIdStore(max_ids=settings.memory_max_ids)
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisIdStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)


def make_key_store(settings: Settings) -> KeyStore:
    if settings.uses_memory_store:
        return MemoryKeyStore()
    timeout = settings.store_timeout_seconds
    return RedisKeyStore(redis_client(settings.store_url, timeout), timeout)


def make_counter_store(settings: Settings) -> CounterStore:
    if settings.uses_memory_store:
        return MemoryCounterStore(max_counters=settings.memory_max_counters)
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisCounterStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)


def make_marker_store(settings: Settings) -> MarkerStore:
    if settings.uses_memory_store:
        return MemoryMarkerStore()
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisMarkerStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)


HOOKS = Hooks(
    credential_body=EmailOrPhone,
    policy=OtpPolicy(),
    generate_code=generate_code,
    make_sender=make_sender,
    final=verified_json,
    make_id_store=make_id_store,
    make_key_store=make_key_store,
    limits=LimitPolicy(),
    make_counter_store=make_counter_store,
    make_marker_store=make_marker_store,
)
"""What `make_app` and the test server build with, unless a test passes other hooks."""
