"""A small typed client for host backends: challenges, TOTP, backup codes and trusted
devices over `/v1`, and verifying results.

    from otpserver.client import OtpClient

    async with OtpClient(OTP_URL, api_key, issuer=OTP_ISSUER) as otp:
        started = await otp.start(email="ada@example.com", end_user_ip=ip)
        # keep started.challenge (the newest token, like a cookie), show the code form
        checked = await otp.check(started.challenge, code)
        if checked.status == "approved":
            claims = otp.verify_result(checked.result)  # EdDSA, aud = this key's id, iss

Every domain outcome of a check is a `status` (SPEC §10); only transport problems raise
`OtpApiError`. Results are verified with PyJWT (`pip install 'otpserver[client]'`) against
the server's `/.well-known/jwks.json`, cached and refreshed when an unknown key id appears.
This module imports nothing else of the server, so it stays usable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

JWKS_PATH = "/.well-known/jwks.json"
JWKS_CACHE_SECONDS = 3600
"""At most the server's own `max-age` (a third of a signing period, at most an hour)."""
RESULT_TYPE = "otp-result+jwt"


class OtpApiError(Exception):
    """An HTTP error from the server: `status`, the stable `code` and the JSON `body`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.code = str(body.get("error", "HTTP"))
        self.body = body
        super().__init__(f"{status} {self.code}: {body.get('message', '')}")

    @property
    def retry_after(self) -> int | None:
        """Seconds to wait before retrying (429, some 503), when the server said."""
        value = self.body.get("retryAfter")
        return int(value) if isinstance(value, int) else None

    @property
    def challenge(self) -> str | None:
        """The new challenge token a refusal carries (it replaces the one you sent)."""
        value = self.body.get("challenge")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Challenge:
    """A pending challenge (create and resend answers). Keep `challenge`: every answer
    carries a new token and older ones stop working."""

    challenge: str
    status: str
    credential: str
    channel: str
    sent: bool
    expires: str
    resend_block: str | None
    attempts_left: int
    resends_left: int
    raw: dict[str, Any]
    match: str | None = None
    """Only for a challenge started with `link=True` and cross-device links on: the number
    to show the user, who picks it on the link's page to approve (`status`)."""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Challenge:
        return cls(
            challenge=str(body["challenge"]),
            status=str(body["status"]),
            credential=str(body["credential"]),
            channel=str(body["channel"]),
            sent=bool(body["sent"]),
            expires=str(body["expires"]),
            resend_block=body.get("resendBlock"),
            attempts_left=int(body["attemptsLeft"]),
            resends_left=int(body["resendsLeft"]),
            raw=body,
            match=body.get("match"),
        )


@dataclass(frozen=True, slots=True)
class LinkWaiting:
    """A challenge started with `link=True`, not approved from its link yet: show `match`
    (None without cross-device links) and ask `status` again. `approval` is `waiting`,
    `ended` (wrong numbers were picked: only typing the code is left) or None. The token you
    hold stays valid."""

    match: str | None
    approval: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """A check's answer: `status` is `approved` (with `result`), `incorrect`, `blocked`,
    `too_many_attempts`, `expired`, `locked` or `invalid`. When `challenge` is set, it
    replaces the one you held."""

    status: str
    challenge: str | None
    result: str | None
    credential: str | None
    channel: str | None
    attempts_left: int | None
    retry_after: int | None
    raw: dict[str, Any]

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CheckOutcome:
        return cls(
            status=str(body["status"]),
            challenge=body.get("challenge"),
            result=body.get("result"),
            credential=body.get("credential"),
            channel=body.get("channel"),
            attempts_left=body.get("attemptsLeft"),
            retry_after=body.get("retryAfter"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """A started TOTP enrolment: show `qr` (an SVG) or `secret` once, keep `pending` (valid
    10 minutes) for `totp_confirm`."""

    pending: str
    uri: str
    secret: str
    qr: str


@dataclass(frozen=True, slots=True)
class FactorOutcome:
    """A TOTP or backup-code check: `status` is `approved`, `incorrect`, `locked` (see
    `retry_after`), `expired` or `invalid`. Whenever `enrolment` or `set` is given, store it
    in place of the one you sent (a confirmation, a redemption, or a blob sealed under an
    older master key)."""

    status: str
    result: str | None
    enrolment: str | None
    enrolment_id: str | None
    set: str | None
    set_id: str | None
    remaining: int | None
    retry_after: int | None
    raw: dict[str, Any]

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FactorOutcome:
        return cls(
            status=str(body["status"]),
            result=body.get("result"),
            enrolment=body.get("enrolment"),
            enrolment_id=body.get("enrolmentId"),
            set=body.get("set"),
            set_id=body.get("setId"),
            remaining=body.get("remaining"),
            retry_after=body.get("retryAfter"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class BackupCodeSet:
    """A new set: show `codes` once (they are stored nowhere), store `set`."""

    codes: list[str]
    set: str
    set_id: str


@dataclass(frozen=True, slots=True)
class TrustedDevice:
    """A device check or trust: `trusted`, else `reason` (`expired`, `revoked`, `invalid`).
    Whenever `device` is given, set it as the device cookie's new value."""

    trusted: bool
    device: str | None
    device_id: str | None
    expires: str | None
    reason: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TrustedDevice:
        return cls(
            trusted=bool(body.get("trusted", "device" in body)),
            device=body.get("device"),
            device_id=body.get("deviceId"),
            expires=body.get("expires"),
            reason=body.get("reason"),
        )


def key_id_of(api_key: str) -> str:
    """The id inside `otpk_<id>_<secret>`: the audience of this key's results."""
    prefix, _, rest = api_key.partition("_")
    key_id = rest.partition("_")[0]
    if prefix != "otpk" or not key_id:
        raise ValueError("an API key looks like otpk_<id>_<secret>")
    return key_id


class OtpClient:
    """Calls one otpserver with one API key; use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        issuer: str,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id_of(api_key)
        self.issuer = issuer
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_seconds,
            transport=transport,
            headers={"authorization": f"Bearer {api_key}"},
        )
        self._jwks: Any = None

    async def __aenter__(self) -> OtpClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(
        self, path: str, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {} if idempotency_key is None else {"idempotency-key": idempotency_key}
        response = await self._http.post(path, json=body, headers=headers)
        self._http.cookies.clear()  # `/v1` ignores cookies: never send any back
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status_code >= 400:
            raise OtpApiError(response.status_code, data)
        return data

    async def start(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        locale: str | None = None,
        end_user_ip: str | None = None,
        nonce: str | None = None,
        link: bool = False,
        idempotency_key: str | None = None,
    ) -> Challenge:
        """Send a code to an email address or phone number (`POST /v1/challenges`).

        `end_user_ip` counts toward per-address limits only for keys with `forward_ip`;
        `nonce` is echoed in the result's `nonce` claim. `link` also emails a sign-in link
        (the server needs `OTP_LINKS=true`); poll `status` for its approval.
        """
        if (email is None) == (phone is None):
            raise ValueError("give exactly one of email and phone")
        body = _without_none(
            {
                "email": email,
                "phone": phone,
                "locale": locale,
                "end_user_ip": end_user_ip,
                "nonce": nonce,
                "link": True if link else None,
            }
        )
        return Challenge.from_json(await self._post("/v1/challenges", body, idempotency_key))

    async def status(self, challenge: str) -> LinkWaiting | CheckOutcome:
        """Where a challenge started with `link=True` stands (`POST /v1/challenges/status`):
        `LinkWaiting` until the user approves from the link with the right number, then the
        check itself, as `check` answers it (`approved` with the result, spending the token),
        or the challenge's end (`expired`, `invalid`). Changes nothing while waiting."""
        body = await self._post("/v1/challenges/status", {"challenge": challenge})
        if body.get("status") == "pending":
            return LinkWaiting(match=body.get("match"), approval=body.get("approval"), raw=body)
        return CheckOutcome.from_json(body)

    async def resend(self, challenge: str) -> Challenge | CheckOutcome:
        """Send a new code for the challenge; the old code stops working. A challenge that
        can no longer be resent answers its `status` instead (`invalid`, `expired`,
        `too_many_attempts`), as a `CheckOutcome`."""
        body = await self._post("/v1/challenges/resend", {"challenge": challenge})
        if body.get("status") != "pending":
            return CheckOutcome.from_json(body)
        return Challenge.from_json(body)

    async def check(
        self,
        challenge: str,
        code: str,
        *,
        nonce: str | None = None,
        idempotency_key: str | None = None,
    ) -> CheckOutcome:
        """Check the code the user typed; every domain outcome is a `status`."""
        body = _without_none({"challenge": challenge, "code": code, "nonce": nonce})
        return CheckOutcome.from_json(
            await self._post("/v1/challenges/check", body, idempotency_key)
        )

    async def cancel(self, challenge: str) -> str:
        """End the challenge; its code stops working. Returns the status (`canceled`)."""
        return str((await self._post("/v1/challenges/cancel", {"challenge": challenge}))["status"])

    async def totp_enrol(
        self,
        *,
        subject: str,
        account: str,
        issuer: str | None = None,
        digits: int | None = None,
        period: int | None = None,
        algorithm: str | None = None,
    ) -> TotpEnrolment:
        """Start a TOTP enrolment for `subject` (`POST /v1/totp/enrolments`)."""
        body = _without_none(
            {
                "subject": subject,
                "account": account,
                "issuer": issuer,
                "digits": digits,
                "period": period,
                "algorithm": algorithm,
            }
        )
        data = await self._post("/v1/totp/enrolments", body)
        return TotpEnrolment(
            pending=str(data["pending"]),
            uri=str(data["uri"]),
            secret=str(data["secret"]),
            qr=str(data["qr"]),
        )

    async def totp_confirm(self, *, subject: str, pending: str, code: str) -> FactorOutcome:
        """Activate an enrolment with the app's code; store `enrolment` when approved."""
        body = {"subject": subject, "pending": pending, "code": code}
        return FactorOutcome.from_json(await self._post("/v1/totp/enrolments/confirm", body))

    async def totp_verify(
        self, *, subject: str, enrolment: str, code: str, nonce: str | None = None
    ) -> FactorOutcome:
        """Check a TOTP code; each time step is approved at most once."""
        body = _without_none(
            {"subject": subject, "enrolment": enrolment, "code": code, "nonce": nonce}
        )
        return FactorOutcome.from_json(await self._post("/v1/totp/verify", body))

    async def backup_codes_generate(
        self, *, subject: str, count: int | None = None
    ) -> BackupCodeSet:
        """A new set of backup codes; the subject's older sets stop working."""
        data = await self._post(
            "/v1/backup-codes", _without_none({"subject": subject, "count": count})
        )
        return BackupCodeSet(
            codes=[str(code) for code in data["codes"]],
            set=str(data["set"]),
            set_id=str(data["setId"]),
        )

    async def backup_code_redeem(
        self, *, subject: str, set: str, code: str, nonce: str | None = None
    ) -> FactorOutcome:
        """Spend one backup code; store the returned `set` whenever there is one."""
        body = _without_none({"subject": subject, "set": set, "code": code, "nonce": nonce})
        return FactorOutcome.from_json(await self._post("/v1/backup-codes/redeem", body))

    async def device_trust(
        self, *, subject: str, days: int | None = None, generation: int | None = None
    ) -> TrustedDevice:
        """Trust the current browser; keep `device` in a cookie of your own."""
        body = _without_none({"subject": subject, "days": days, "generation": generation})
        return TrustedDevice.from_json(await self._post("/v1/devices/trust", body))

    async def device_check(
        self, *, subject: str, device: str, generation: int | None = None
    ) -> TrustedDevice:
        """Whether the device token is still trusted (it only ever waives a second factor)."""
        body = _without_none({"subject": subject, "device": device, "generation": generation})
        return TrustedDevice.from_json(await self._post("/v1/devices/check", body))

    async def device_revoke(self, *, subject: str, device_id: str | None = None) -> str:
        """Revoke one device, or all of the subject's; returns the `deviceId` or `all`."""
        body = _without_none({"subject": subject, "deviceId": device_id})
        return str((await self._post("/v1/devices/revoke", body))["revoked"])

    def verify_result(
        self, token: str, *, audience: str | None = None, nonce: str | None = None
    ) -> dict[str, Any]:
        """The claims of a result, after checking it as a host backend must: EdDSA only,
        signed by a key of the server's JWKS, `iss` the server's issuer, `aud` this API
        key's id (or `audience`, e.g. `OTP_RESULT_AUDIENCE` for browser results), not
        expired, and `nonce` equal to the one given. Raises `jwt.PyJWTError` otherwise.

        Synchronous: the JWKS is fetched (rarely) with the standard library.
        """
        import jwt  # PyJWT, the `client` extra: imported here so the server never needs it

        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(
                self.base_url + JWKS_PATH, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS
            )
        if jwt.get_unverified_header(token).get("typ") != RESULT_TYPE:
            raise jwt.InvalidTokenError("not an otpserver result")
        key = self._jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=audience or self.key_id,
            issuer=self.issuer,
            options={"require": ["iss", "aud", "sub", "exp", "iat", "jti"]},
        )
        if nonce is not None and claims.get("nonce") != nonce:
            raise jwt.InvalidTokenError("the result's nonce is not the one given")
        return claims


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if value is not None}
