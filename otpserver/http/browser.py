"""The browser flow's routes: the pending state carried in an HttpOnly cookie.

Each handler only reads the request, opens the cookie, calls the verification flow
(`otpserver.verification.service`), and seals what the flow hands back into the cookie:
every decision is the flow's, the same for every carrier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.responses import Response

from otpserver.errors import CredentialInvalid, InvalidCookie
from otpserver.hooks import FinalHook, VerifiedCredential
from otpserver.http.bodies import read_code, read_json_object
from otpserver.http.cookies import CookieCodec, read_cookie
from otpserver.http.exchange import ApiRequest, ApiResponse, json_response
from otpserver.otp import flow
from otpserver.otp.codes import parse_code
from otpserver.otp.credentials import CredentialBody
from otpserver.otp.payload import TokenList
from otpserver.results.signer import ResultSigner
from otpserver.settings.links import LinkSettings
from otpserver.verification.service import HandBack, Requester, Verifications


@dataclass(frozen=True, slots=True)
class BrowserEndpoints:
    """`/api/otp/create`, `/resend` and `/verify`, bound to the flow and the cookie."""

    verifications: Verifications
    credential_body: type[CredentialBody]
    codec: CookieCodec
    final: FinalHook
    clock: Callable[[], float]
    results: ResultSigner | None = None
    """Signs the result handed to the final hook (SPEC §11)."""
    links: LinkSettings = field(default_factory=LinkSettings)
    """Whether emails carry a sign-in link, and where it points (SPEC §18)."""

    async def create(self, request: ApiRequest) -> ApiResponse:
        """Send a code to a credential, or make an already pending one current again."""
        now = int(self.clock())
        requester = self._requester(request)
        limiter = self.verifications.limiter
        # Refused requests are metered like served ones, and an address they left over its
        # allowance is refused here, before the (possibly costly) validation runs.
        limiter.check_refused(requester.address, now)
        data = read_json_object(request)
        try:
            body = self.credential_body.model_validate(data)
        except ValidationError as error:
            await limiter.charge_refused(self.verifications.ids, requester.address, now)
            fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
            raise CredentialInvalid(extra={"fields": fields}) from None
        credential = body.credential()
        started = await self.verifications.start(
            await self._open(request, now, required=False),
            credential,
            locale=body.requested_locale(),
            requester=requester,
            now=now,
            link_base=self._link_base(request),
        )
        return await self._state_response(started.state, now, sent=started.sent)

    async def resend(self, request: ApiRequest) -> ApiResponse:
        """Send a fresh code for the current credential; the old code stops working."""
        now = int(self.clock())
        held = await self.require(request, now)
        try:
            updated = await self.verifications.resend(
                held,
                requester=self._requester(request),
                now=now,
                link_base=self._link_base(request),
            )
        except HandBack as handback:
            raise await self._with_cookie(handback, now) from None
        return await self._state_response(updated, now, sent=True)

    async def verify(self, request: ApiRequest) -> Response:
        """Check a code; on success run the final hook exactly once."""
        policy = self.verifications.policy
        code = parse_code(read_code(request), policy.length, policy.alphabet)
        now = int(self.clock())
        return await self.complete(request, await self.require(request, now), code, now)

    async def complete(
        self,
        request: ApiRequest,
        held: TokenList,
        code: str,
        now: int,
        *,
        via_link: bool = False,
    ) -> Response:
        """Check `code` against the cookie's state `held`: a typed code, a clicked link and
        an approved link all end here, so each is exactly one guess under the same limits;
        `via_link` says which, for the result, the final hook and the audit trail."""
        try:
            approved = await self.verifications.check(
                held, code, requester=self._requester(request), now=now, via_link=via_link
            )
        except HandBack as handback:
            raise await self._with_cookie(handback, now) from None
        remaining = approved.remaining
        cookie = (
            self.codec.clear_header()
            if remaining is None
            else await self._cookie_header(remaining, now)
        )
        result = (
            None
            if self.results is None
            else self.results.for_browser(
                approved.credential, approved.verified_at, via_link=via_link
            )
        )
        response = await self.final(
            VerifiedCredential(
                approved.credential,
                float(approved.verified_at),
                result,
                via_link=via_link,
            ),
            request.starlette(),
        )
        response.headers.append("Set-Cookie", cookie)
        return response

    def _requester(self, request: ApiRequest) -> Requester:
        return Requester(
            address=self.verifications.limiter.address_bucket(request.scope),
            origin_host=request_host(request.header(b"host") or ""),
            accept_language=request.header(b"accept-language"),
        )

    def _link_base(self, request: ApiRequest) -> str | None:
        """Where sign-in links point: the configured base, or in development the request's
        own host (production requires `OTP_LINK_BASE_URL`); None when links are off."""
        if not self.links.enabled:
            return None
        if self.links.base_url is not None:
            return self.links.base_url
        host = request.header(b"host") or ""
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if request_host(host) != name.lower() or not (port == "" or port.isdigit()):
            return None
        return f"http://{host.lower()}"

    async def require(self, request: ApiRequest, now: int) -> TokenList:
        """The request's token list; `InvalidCookie` when missing or unusable."""
        held = await self._open(request, now, required=True)
        # required=True raises instead of returning None; the assert only narrows the type.
        assert held is not None  # noqa: S101  # nosec B101
        return held

    async def open(self, request: ApiRequest, now: int) -> TokenList | None:
        """The request's token list, or None when it carries none that opens."""
        return await self._open(request, now, required=False)

    async def _open(self, request: ApiRequest, now: int, *, required: bool) -> TokenList | None:
        """The request's token list; None (or `InvalidCookie` if required) when unusable."""
        value = read_cookie(request.scope["headers"], self.codec.name)
        if value is None:
            if required:
                raise InvalidCookie()
            return None
        try:
            return await self.codec.open(value, now)
        except InvalidCookie:
            if required:
                raise
            return None

    async def _with_cookie(self, handback: HandBack, now: int) -> Exception:
        """The refusal, carrying the handed-back state in its `Set-Cookie`."""
        handback.__traceback__ = None  # it holds the frames that hold it: see forget_traceback
        handback.error.headers["Set-Cookie"] = await self._cookie_header(handback.state, now)
        return handback.error

    async def _cookie_header(self, tokens: TokenList, now: int) -> str:
        return self.codec.set_header(await self.codec.seal(tokens, now), flow.lifetime(tokens, now))

    async def _state_response(self, tokens: TokenList, now: int, *, sent: bool) -> ApiResponse:
        response = json_response(flow.public_state(tokens, now, sent=sent))
        response.add_header("Set-Cookie", await self._cookie_header(tokens, now))
        return response


def request_host(host_header: str) -> str:
    """The host name the client used, for the SMS autofill line; 'localhost' if unusable."""
    host = host_header.rpartition(":")[0] or host_header
    if host.startswith("["):
        return "localhost"
    host = host.lower()
    if (
        not host
        or len(host) > 253
        or not all(c.isalnum() or c in "-." for c in host)
        or not host.isascii()
    ):
        return "localhost"
    return host
