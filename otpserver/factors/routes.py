"""The second-factor routes of `/v1` (SPEC §13-§15): authenticate, parse, call the service.

Each route needs an API key with its scope (`totp`, `backup_codes` or `devices`), takes a
strict JSON body and answers JSON: 201 for what it creates, 200 with the outcome of every
check (`status`, or `trusted` and a `reason` for devices). `routes` returns plain
Starlette routes for the application to mount. A TOTP confirmation or verification, a
backup-code redemption, a trusted-device check and a revocation are one store step each, so
they charge the key as that step's gate (`GatedAuthenticate`); the other routes charge it up
front. A backup-code generation does too, on purpose: its codes are hashed with scrypt
(costly) before its one marker write, and the key's charge must refuse before that work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from otpserver.errors import BodyInvalid, UnsupportedMediaType
from otpserver.factors.devices import TrustedDevices
from otpserver.factors.models import (
    BackupCodeRedeemRequest,
    BackupCodesRequest,
    DeviceCheckRequest,
    DeviceRevokeRequest,
    DeviceTrustRequest,
    TotpConfirmRequest,
    TotpEnrolRequest,
    TotpVerifyRequest,
)
from otpserver.factors.service import SecondFactors
from otpserver.factors.totp import TotpParameters
from otpserver.stores.base import Gate

TOTP_SCOPE = "totp"
BACKUP_CODES_SCOPE = "backup_codes"
DEVICES_SCOPE = "devices"

RequestModel = TypeVar("RequestModel", bound=BaseModel)


class Caller(Protocol):
    """The authenticated API key (`otpserver.v1.auth.ApiKey`): its id is the audience of
    the results it receives."""

    @property
    def id(self) -> str: ...


Authenticate = Callable[[Request, str], Awaitable[Caller]]
"""Checks the request's API key has the scope and charges it; raises 401/403/429 otherwise."""
GatedAuthenticate = Callable[[Request, str], AbstractAsyncContextManager[tuple[Caller, Gate]]]
"""Checks the request's API key has the scope (401/403), and for the block it opens hands
out the key's charge as the gate of one store step, charging it on exit if nothing took it
(`otpserver.v1.auth.gated_key`)."""
Endpoint = Callable[[Request], Awaitable[Response]]
"""A route's handler; `route(path, endpoint)` makes it a POST-only route (404 for other
methods, never 405: SPEC §3), the same way the application makes all its POST routes."""


async def read_model(request: Request, model: type[RequestModel]) -> RequestModel:
    """The body as `model`: JSON only (415 otherwise), unknown fields and wrong types 400."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("This route accepts application/json only.")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        raise BodyInvalid(describe(error)) from None


def describe(error: ValidationError) -> str:
    """The first problem, naming its field but never echoing the value sent."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"Invalid `{where}`: {first['msg']}."


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def routes(
    factors: SecondFactors,
    devices: TrustedDevices,
    authenticate: Authenticate,
    gated: GatedAuthenticate,
    route: Callable[[str, Endpoint], BaseRoute],
) -> list[BaseRoute]:
    """The TOTP, backup-code and trusted-device routes, guarded by `authenticate` (or by
    `gated`, for the checks that are one store step), each made by `route` (the
    application's own POST-only route)."""

    async def totp_enrol(request: Request) -> Response:
        await authenticate(request, TOTP_SCOPE)
        body = await read_model(request, TotpEnrolRequest)
        parameters = TotpParameters(
            digits=body.digits, period=body.period, algorithm=body.algorithm
        )
        answer = await factors.enrol(
            subject=body.subject, account=body.account, issuer=body.issuer, parameters=parameters
        )
        return _json(answer, 201)

    async def totp_confirm(request: Request) -> Response:
        async with gated(request, TOTP_SCOPE) as (_, gate):
            body = await read_model(request, TotpConfirmRequest)
            return _json(
                await factors.confirm(
                    subject=body.subject, pending=body.pending, code=body.code, gate=gate
                )
            )

    async def totp_verify(request: Request) -> Response:
        async with gated(request, TOTP_SCOPE) as (caller, gate):
            body = await read_model(request, TotpVerifyRequest)
            answer = await factors.verify(
                audience=caller.id,
                subject=body.subject,
                enrolment_blob=body.enrolment,
                code=body.code,
                nonce=body.nonce,
                gate=gate,
            )
            return _json(answer)

    async def backup_generate(request: Request) -> Response:
        await authenticate(request, BACKUP_CODES_SCOPE)
        body = await read_model(request, BackupCodesRequest)
        return _json(await factors.generate(subject=body.subject, count=body.count), 201)

    async def backup_redeem(request: Request) -> Response:
        async with gated(request, BACKUP_CODES_SCOPE) as (caller, gate):
            body = await read_model(request, BackupCodeRedeemRequest)
            answer = await factors.redeem(
                audience=caller.id,
                subject=body.subject,
                set_blob=body.set,
                code=body.code,
                nonce=body.nonce,
                gate=gate,
            )
            return _json(answer)

    async def device_trust(request: Request) -> Response:
        await authenticate(request, DEVICES_SCOPE)
        body = await read_model(request, DeviceTrustRequest)
        if body.days is not None and body.days > devices.settings.trusted_device_days:
            raise BodyInvalid(
                f"Invalid `days`: at most {devices.settings.trusted_device_days} here."
            )
        answer = await devices.trust(
            subject=body.subject, days=body.days, generation=body.generation
        )
        return _json(answer, 201)

    async def device_check(request: Request) -> Response:
        async with gated(request, DEVICES_SCOPE) as (_, gate):
            body = await read_model(request, DeviceCheckRequest)
            return _json(
                await devices.check(
                    subject=body.subject, device=body.device, generation=body.generation, gate=gate
                )
            )

    async def device_revoke(request: Request) -> Response:
        async with gated(request, DEVICES_SCOPE) as (_, gate):
            body = await read_model(request, DeviceRevokeRequest)
            return _json(
                await devices.revoke(subject=body.subject, device_id=body.deviceId, gate=gate)
            )

    return [
        route("/v1/devices/trust", device_trust),
        route("/v1/devices/check", device_check),
        route("/v1/devices/revoke", device_revoke),
        route("/v1/totp/enrolments", totp_enrol),
        route("/v1/totp/enrolments/confirm", totp_confirm),
        route("/v1/totp/verify", totp_verify),
        route("/v1/backup-codes", backup_generate),
        route("/v1/backup-codes/redeem", backup_redeem),
    ]
