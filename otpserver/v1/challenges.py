"""Challenges (SPEC §10): a backend starts, resends, checks and cancels a verification.

The pending state a browser keeps in its cookie is handed to the calling backend instead,
sealed as a *challenge token* bound to the calling API key: a token sealed for one key is
`invalid` for every other. Every step runs the same flow as the browser's
(`otpserver.verification.service`) — the same single-use IDs, limits, delivery and
rollback — and every change of state rotates the token's ID, so the caller must keep the
newest token, like a cookie jar: an older copy answers `invalid` and never gains a guess.

Every domain outcome of a check is a 200 with a `status`; HTTP errors are left for
transport problems (a malformed body or code, a refused key, limits other than the
credential's lockout, a failed send, an unavailable store).

Create, resend, check and cancel each make one store step, and the calling key's charge
rides in it as its gate (`gated_key`): one round trip in all. Status reads the link's
approval markers first, so it charges the key up front.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from otpserver.errors import (
    BodyInvalid,
    CredentialInvalid,
    InvalidCookie,
    OtpError,
    OtpExpired,
    OtpIncorrect,
    RateLimited,
    TooManyAttempts,
    UnsupportedMediaType,
    VerificationNotAllowed,
)
from otpserver.limits.clientaddr import limit_bucket
from otpserver.limits.rules import LOCKOUT_KIND
from otpserver.otp import flow, payload
from otpserver.otp.codes import parse_code
from otpserver.otp.credentials import CredentialBody
from otpserver.otp.payload import TokenList
from otpserver.results.signer import ResultSigner, code_method
from otpserver.settings.links import LinkSettings
from otpserver.stores.base import Gate
from otpserver.v1.auth import (
    ApiKey,
    address_bucket,
    authenticate,
    end_user_address,
    gated_key,
)
from otpserver.v1.idempotency import run_idempotent
from otpserver.verification.links import LinkApprovals
from otpserver.verification.sealing import PendingSealer
from otpserver.verification.service import HandBack, Requester, Verifications

log = logging.getLogger("otpserver.v1.challenges")

SCOPE = "challenges"
PURPOSE = b"otpserver/challenge/v1"
"""With the API key id after it, the associated data of every challenge token."""
TOKEN_VERSION = 1
MAX_NONCE_CHARS = 255
MAX_TOKEN_CHARS = 2048
"""Far above a real token (one pending code seals to about 250 characters), and small enough
that a body holding one stays under the smallest body limit (`OTP_MAX_BODY_BYTES`)."""
RESERVED_FIELDS = ("end_user_ip", "nonce", "link")
"""Fields of a create body that belong to the API, not to the credential schema."""


class TokenBody(BaseModel):
    """A body naming a challenge token: resend and cancel."""

    model_config = ConfigDict(extra="forbid")
    challenge: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)


class CheckBody(TokenBody):
    """A check: the token, the code the user typed, and an optional nonce for the result."""

    code: str = Field(max_length=64, description="As typed; the code format is checked.")
    nonce: str | None = Field(default=None, min_length=1, max_length=MAX_NONCE_CHARS)


class ChallengePending(BaseModel):
    """A challenge waiting for its code: the token to keep (replacing any older one)."""

    challenge: str
    status: Literal["pending"]
    credential: str
    channel: str
    sent: bool
    expires: str
    resendBlock: str | None
    attemptsLeft: int
    resendsLeft: int
    match: str | None = Field(
        default=None,
        pattern="^[0-9]{2}$",
        description="Only for a challenge created with `link`: the number to show the user "
        "for approval from the link (OTP_LINK_CROSS_DEVICE=true); null without it.",
    )


class LinkWaiting(BaseModel):
    """A challenge created with `link`, still waiting: the number to show, and whether
    approval from the link is still possible. The token the caller holds stays valid."""

    status: Literal["pending"]
    match: str | None
    approval: Literal["waiting", "ended"] | None


class ChallengeOutcome(BaseModel):
    """The outcome of a check (or of a resend that could not send): `status`, and what the
    caller may do next. `challenge`, when present, replaces the token the caller holds."""

    status: Literal[
        "approved", "incorrect", "blocked", "too_many_attempts", "expired", "locked", "invalid"
    ]
    credential: str | None = None
    channel: str | None = None
    result: str | None = Field(default=None, description="The signed result (SPEC §11).")
    attemptsLeft: int | None = None
    otpBlock: str | None = None
    retryAfter: int | None = None
    challenge: str | None = None


class ChallengeCanceled(BaseModel):
    """The outcome of a cancel: `invalid` when the token was already spent or never valid."""

    status: Literal["canceled", "invalid"]


def create_body_model(credential_body: type[CredentialBody]) -> type[CredentialBody]:
    """The create body: the fork's own credential schema, plus the API's two fields."""
    model: type[CredentialBody] = create_model(
        "ChallengeCreate",
        __base__=credential_body,
        end_user_ip=(
            str | None,
            Field(
                default=None,
                min_length=1,
                max_length=64,
                description="The end user's address; limits count it for forward_ip keys.",
                json_schema_extra={
                    "anyOf": [
                        {"type": "string", "format": "ipv4"},
                        {"type": "string", "format": "ipv6"},
                        {"type": "null"},
                    ]
                },
            ),
        ),
        nonce=(str | None, Field(default=None, min_length=1, max_length=MAX_NONCE_CHARS)),
        link=(
            bool,
            Field(
                default=False,
                description="Email a sign-in link too (needs OTP_LINKS=true). With "
                "OTP_LINK_CROSS_DEVICE=true the user approves it by the `match` number, "
                "and /v1/challenges/status completes the challenge; otherwise the link "
                "shows the code to type.",
            ),
        ),
    )
    return model


@dataclass(frozen=True, slots=True)
class Pending:
    """What a challenge token holds: the pending state, the nonce given at create, and the
    limit bucket of the end user a `forward_ip` key named at create (None: the caller's),
    so resends and checks count against the same end user as the send did."""

    state: TokenList
    nonce: str | None
    address: str | None
    link: bool = False
    """Whether the emails of this challenge carry a sign-in link."""


@dataclass(frozen=True, slots=True)
class ChallengeTokens:
    """Seals `Pending` states as challenge tokens bound to one API key, and opens them."""

    sealer: PendingSealer

    async def seal(self, pending: Pending, key_id: str, now: float) -> str:
        """The token for `pending`, openable only with `key_id`."""
        fields = [TOKEN_VERSION, pending.nonce, pending.address, payload.encode(pending.state)]
        if pending.link:
            # Appended only when set, so tokens without links keep their earlier form.
            fields.append(True)
        plaintext = msgpack.packb(fields, use_bin_type=True)
        return await self.sealer.seal_bytes(plaintext, now, purpose=purpose(key_id))

    async def open(self, token: str, key_id: str, now: float) -> Pending:
        """The pending state, or `InvalidCookie` however the token is wrong."""
        plaintext = await self.sealer.open_bytes(token, now, purpose=purpose(key_id))
        try:
            version, nonce, address, state, *rest = msgpack.unpackb(plaintext, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise InvalidCookie() from None
        if (
            rest not in ([], [True])
            or version != TOKEN_VERSION
            or not (nonce is None or isinstance(nonce, str))
            or not (address is None or isinstance(address, str))
            or not isinstance(state, bytes)
        ):
            raise InvalidCookie()
        return Pending(payload.decode(state), nonce, address, link=bool(rest))


def purpose(key_id: str) -> bytes:
    """The associated data binding a token to the API key it was issued to."""
    return PURPOSE + b"\x00" + key_id.encode("ascii")


def status(name: str, **fields: Any) -> Response:
    """A 200 answer with a domain outcome."""
    return JSONResponse({"status": name, **fields})


async def json_object(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its JSON object: JSON only (415), an object only (400)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("This route accepts application/json only.")
    body = await request.body()
    try:
        data = from_json(body)
    except ValueError:
        raise BodyInvalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BodyInvalid("The body must be a JSON object.")
    return body, data


def model(data: dict[str, Any], kind: type[BaseModel]) -> Any:
    """`data` validated as `kind`; the first problem named by its field, never its value."""
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BodyInvalid(f"Invalid `{where}`: {first['msg']}.") from None


class NamedToken(NamedTuple):
    """A request naming a challenge token: the token, what it holds, when."""

    token: str
    held: Pending | None
    now: int


Endpoint = Callable[[Request], Awaitable[Response]]
RouteMaker = Callable[[str, Endpoint], BaseRoute]


@dataclass(frozen=True, slots=True)
class Challenges:
    """The four challenge routes, bound to the flow and the token sealer."""

    verifications: Verifications
    create_body: type[CredentialBody]
    """The fork's credential schema with `end_user_ip` and `nonce` (`create_body_model`)."""
    tokens: ChallengeTokens
    results: ResultSigner
    clock: Callable[[], float]
    links: LinkSettings = field(default_factory=LinkSettings)
    approvals: LinkApprovals | None = None
    """Approval markers of sign-in links; None when links are off."""

    def routes(self, route: RouteMaker) -> list[BaseRoute]:
        """The routes, each built by `route(path, endpoint)` as a POST-only route."""
        return [
            route("/v1/challenges", self.create),
            route("/v1/challenges/resend", self.resend),
            route("/v1/challenges/check", self.check),
            route("/v1/challenges/cancel", self.cancel),
            route("/v1/challenges/status", self.status),
        ]

    async def create(self, request: Request) -> Response:
        """Send a code and answer 201 with the first challenge token."""
        async with gated_key(request, SCOPE) as (key, gate):
            return await self._create(request, key, gate)

    async def _create(self, request: Request, key: ApiKey, gate: Gate) -> Response:
        raw, data = await json_object(request)

        async def run() -> Response:
            now = int(self.clock())
            limiter = self.verifications.limiter
            caller = address_bucket(request, key, None)
            # Refused creates are metered like served ones, as in the browser flow: an
            # address left over its allowance is refused before validation runs.
            limiter.check_refused(caller, now)
            try:
                body = self.create_body.model_validate(data)
            except ValidationError as error:
                await limiter.charge_refused(self.verifications.ids, caller, now, gate)
                fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
                if set(fields) <= set(RESERVED_FIELDS):
                    raise BodyInvalid(extra={"fields": fields}) from None
                raise CredentialInvalid(extra={"fields": fields}) from None
            end_user_ip: str | None = getattr(body, "end_user_ip", None)
            nonce: str | None = getattr(body, "nonce", None)
            link: bool = getattr(body, "link", False)
            link_base = self._link_base(request) if link else None
            if link and link_base is None:
                raise BodyInvalid("`link` needs sign-in links: set OTP_LINKS=true.")
            credential = body.credential()
            forwarded = end_user_address(key, end_user_ip)
            address = None if forwarded is None else limit_bucket(forwarded)
            started = await self.verifications.start(
                None,
                credential,
                locale=body.requested_locale(),
                requester=self._requester(request, key, address),
                now=now,
                link_base=link_base,
                gate=gate,
            )
            pending = Pending(started.state, nonce, address, link)
            token = await self.tokens.seal(pending, key.id, now)
            return JSONResponse(
                self._pending(token, pending, now, sent=started.sent), status_code=201
            )

        return await run_idempotent(request, key, raw, run)

    async def resend(self, request: Request) -> Response:
        """Send a fresh code for the challenge; the old code and token stop working."""
        async with gated_key(request, SCOPE) as (key, gate):
            return await self._resend(request, key, gate)

    async def _resend(self, request: Request, key: ApiKey, gate: Gate) -> Response:
        _, held, now = await self._named_token(request, key)
        if held is None:
            return status("invalid")
        requester = self._requester(request, key, held.address)
        try:
            updated = await self.verifications.resend(
                held.state,
                requester=requester,
                now=now,
                link_base=self._link_base(request) if held.link else None,
                gate=gate,
            )
        except HandBack as handback:
            raise await self._handed_back(handback, held, key.id, now) from None
        except InvalidCookie:
            return status("invalid")
        except OtpExpired:
            return status("expired")
        except TooManyAttempts:
            return status("too_many_attempts")
        pending = Pending(updated, held.nonce, held.address, held.link)
        token = await self.tokens.seal(pending, key.id, now)
        return JSONResponse(self._pending(token, pending, now, sent=True))

    async def check(self, request: Request) -> Response:
        """Check a code: 200 with the outcome, and a signed result when approved."""
        async with gated_key(request, SCOPE) as (key, gate):
            return await self._check_request(request, key, gate)

    async def _check_request(self, request: Request, key: ApiKey, gate: Gate) -> Response:
        raw, data = await json_object(request)

        async def run() -> Response:
            body: CheckBody = model(data, CheckBody)
            policy = self.verifications.policy
            code = parse_code(body.code, policy.length, policy.alphabet)
            now = int(self.clock())
            try:
                held = await self.tokens.open(body.challenge, key.id, now)
            except InvalidCookie:
                return status("invalid")
            return await self._check(
                request, key, held, code, body.challenge, body.nonce, now, gate
            )

        return await run_idempotent(request, key, raw, run)

    async def status(self, request: Request) -> Response:
        """A challenge created with `link`: still waiting (with the number to show), or,
        once the link was approved by that number, the check itself with the link's code."""
        key = await authenticate(request, SCOPE)
        token, held, now = await self._named_token(request, key)
        if held is None:
            return status("invalid")
        entry = held.state.current_entry
        if now >= entry.expires_at:
            return status("expired")
        if not (held.link and self.links.cross_device and self.approvals is not None):
            return status("pending", match=None, approval=None)
        grant = await self.approvals.approved(entry, now)
        if grant is not None:
            return await self._check(
                request, key, held, grant.code, token, None, now, via_link=True
            )
        ended = await self.approvals.ended(entry)
        return status(
            "pending",
            match=self.approvals.tokens.match_number(entry.digest),
            approval="ended" if ended else "waiting",
        )

    async def _check(
        self,
        request: Request,
        key: ApiKey,
        held: Pending,
        code: str,
        challenge: str,
        nonce: str | None,
        now: int,
        gate: Gate | None = None,
        via_link: bool = False,
    ) -> Response:
        """One check of `code` against the challenge, typed or from an approved link."""
        try:
            approved = await self.verifications.check(
                held.state,
                code,
                requester=self._requester(request, key, held.address),
                now=now,
                gate=gate,
                via_link=via_link,
            )
        except HandBack as handback:
            return await self._refused_after_spend(handback, held, key.id, now)
        except InvalidCookie:
            return status("invalid")
        except OtpExpired:
            return status("expired")
        except TooManyAttempts:
            return status("too_many_attempts")
        except VerificationNotAllowed as blocked:
            # Refused before any state change: the token the caller holds still works.
            return status("blocked", retryAfter=blocked.extra["retryAfter"], challenge=challenge)
        credential = approved.credential
        result = self.results.issue(
            audience=key.id,
            subject=None,
            method=code_method(credential.channel, via_link=via_link),
            credential=credential,
            nonce=nonce or held.nonce,
            now=approved.verified_at,
        )
        return status(
            "approved",
            credential=credential.address,
            channel=credential.channel,
            result=result,
        )

    async def cancel(self, request: Request) -> Response:
        """Spend the challenge's ID, so no copy of its token works again."""
        async with gated_key(request, SCOPE) as (key, gate):
            _, held, now = await self._named_token(request, key)
            if held is None:
                return status("invalid")
            if not await self.verifications.cancel(held.state, now=now, gate=gate):
                return status("invalid")
            return status("canceled")

    async def _named_token(self, request: Request, key: ApiKey) -> NamedToken:
        """The token the body names and its state (None when it does not open for `key`:
        tampered, replayed, another key's), and the time now."""
        _, data = await json_object(request)
        body: TokenBody = model(data, TokenBody)
        now = int(self.clock())
        try:
            held = await self.tokens.open(body.challenge, key.id, now)
        except InvalidCookie:
            held = None
        return NamedToken(body.challenge, held, now)

    async def _refused_after_spend(
        self, handback: HandBack, held: Pending, key_id: str, now: int
    ) -> Response:
        """A wrong code or the credential's lockout after the spend: the outcome, with the
        new token; any other refusal raised as an HTTP error carrying the new token."""
        error = await self._handed_back(handback, held, key_id, now)
        token = error.extra["challenge"]
        if isinstance(error, OtpIncorrect):
            return status(
                "incorrect",
                attemptsLeft=error.extra["attemptsLeft"],
                otpBlock=error.extra["otpBlock"],
                challenge=token,
            )
        # The lockout's refusal is a domain outcome (`locked`), not a transport error.
        if isinstance(error, RateLimited) and LOCKOUT_KIND in error.refused_by:
            return status("locked", retryAfter=error.extra["retryAfter"], challenge=token)
        raise error

    async def _handed_back(
        self, handback: HandBack, held: Pending, key_id: str, now: int
    ) -> OtpError:
        """The refusal behind `handback`, carrying the new token (in `extra["challenge"]`)
        that replaces the spent one."""
        handback.__traceback__ = None  # it holds the frames that hold it
        after = Pending(handback.state, held.nonce, held.address, held.link)
        handback.error.extra["challenge"] = await self.tokens.seal(after, key_id, now)
        return handback.error

    def _pending(self, token: str, pending: Pending, now: int, *, sent: bool) -> dict[str, Any]:
        state = pending.state
        shown = flow.public_state(state, now, sent=sent)
        extra: dict[str, Any] = {}
        if pending.link:
            extra["match"] = (
                self.approvals.tokens.match_number(state.current_entry.digest)
                if self.approvals is not None and self.links.cross_device
                else None
            )
        return {
            "challenge": token,
            "status": "pending",
            "credential": shown["credential"],
            "channel": shown["channel"],
            "sent": shown["sent"],
            "expires": shown["expires"],
            "resendBlock": shown["resendBlock"],
            "attemptsLeft": shown["attemptsLeft"],
            "resendsLeft": shown["resendsLeft"],
            **extra,
        }

    def _requester(self, request: Request, key: ApiKey, address: str | None) -> Requester:
        """Who asks: the end user's limit bucket when a `forward_ip` key named one at create,
        else the calling server's own address."""
        return Requester(
            address=address or address_bucket(request, key, None),
            origin_host=self._origin_host(request),
        )

    def _link_base(self, request: Request) -> str | None:
        """Where links point: the configured base (always set in production), or in
        development the scheme and host the backend called; None when links are off."""
        if not self.links.enabled:
            return None
        return self.links.base_url or f"{request.url.scheme}://{request.url.netloc}"

    def _origin_host(self, request: Request) -> str:
        # The site a message names: the deployment's own (always set in production); in
        # development, the host the backend called.
        return self.verifications.public_host or request.url.hostname or "localhost"
