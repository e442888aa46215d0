"""The HTTP handlers: thin steps around the pure flow, the ID store, the envelope and the sender.

Ordering is the security argument here, so each handler reads top to bottom as:
validate → open the cookie → refuse what needs no state change → charge the abuse limits →
claim the cookie's single-use ID (exactly one concurrent request wins) → act → seal the new
state. A refused charge sends nothing and spends nothing. Verify and resend claim the ID
first and charge after, because only a request that will really act may count: N parallel
replays of one cookie are one guess (one failure) or one send, not N; a refusal there hands
the unchanged entries back under the new ID, so it costs the client nothing either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.responses import Response

from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
from otpserver.errors import (
    CredentialInvalid,
    InvalidCookie,
    SendFailed,
    ServerError,
    StoreUnavailable,
)
from otpserver.hooks import CodeGenerator, FinalHook, VerifiedCredential
from otpserver.http.bodies import read_code, read_json_object
from otpserver.http.cookies import CookieCodec, read_cookie
from otpserver.http.exchange import ApiRequest, ApiResponse, json_response
from otpserver.limits.limiter import Action, Limiter
from otpserver.observability import outcomes
from otpserver.otp import flow
from otpserver.otp.codes import code_digest, digest_matches, parse_code
from otpserver.otp.credentials import Credential, CredentialBody
from otpserver.otp.payload import LIST_ID_BYTES, Entry, TokenList
from otpserver.otp.policy import OtpPolicy
from otpserver.results.signer import ResultSigner
from otpserver.stores.base import IdStore

log = logging.getLogger("otpserver.http.browser")


def new_list_id() -> bytes:
    """A fresh random single-use ID from the OS CSPRNG."""
    return os.urandom(LIST_ID_BYTES)


@dataclass(frozen=True, slots=True)
class OtpEndpoints:
    """The three OTP routes, bound to their collaborators."""

    policy: OtpPolicy
    credential_body: type[CredentialBody]
    generate_code: CodeGenerator
    sender: Sender
    final: FinalHook
    ids: IdStore
    codec: CookieCodec
    digest_key: bytes
    clock: Callable[[], float]
    limiter: Limiter
    test_codes: Mapping[str, str] = field(default_factory=dict)
    """Development test identities: fixed codes, never delivered."""
    results: ResultSigner | None = None
    """Signs the result handed to the final hook (SPEC §11)."""
    previous_digest_keys: tuple[bytes, ...] = ()
    """Digest keys of `OTP_MASTER_KEY_PREVIOUS`: codes sent before a rotation still verify."""
    public_host: str | None = None
    """The site name for messages; None (development only) means the request's Host."""

    async def create(self, request: ApiRequest) -> ApiResponse:
        """Send a code to a credential, or make an already pending one current again."""
        data = read_json_object(request)
        try:
            body = self.credential_body.model_validate(data)
        except ValidationError as error:
            fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
            raise CredentialInvalid(extra={"fields": fields}) from None
        credential = body.credential()
        self.limiter.check_destination(credential)
        now = int(self.clock())
        tokens = await self._open(request, now, required=False)

        # Each charge below also files the new ID, rotated from the cookie's (one round trip
        # on Redis); a refused charge changes nothing.
        if tokens is not None:
            index = flow.find_live(tokens, credential, now)
            if index is not None:
                current = TokenList(new_list_id(), index, tokens.entries)
                if await self.limiter.charge_and_file(
                    "switch",
                    self.ids,
                    tokens.list_id,
                    current.list_id,
                    flow.lifetime(current, now),
                    request.scope,
                    credential,
                    now,
                ):
                    return await self._state_response(current, now, sent=False)
                # Replayed or superseded: start afresh and keep nothing from it.
                tokens = None

        kept = flow.live_entries(tokens, now)
        flow.check_room(kept, self.policy)
        list_id = new_list_id()
        # Every create charged here sends: a lost claim only starts a fresh list.
        filed = await self.limiter.charge_and_file(
            "send",
            self.ids,
            None if tokens is None else tokens.list_id,
            list_id,
            flow.lifetime_with_new(kept, now, self.policy),
            request.scope,
            credential,
            now,
        )
        if tokens is not None and not filed:
            # Replayed or superseded: start afresh and keep nothing from it.
            tokens, kept = None, ()
            filed = await self.ids.add(list_id, flow.lifetime_with_new(kept, now, self.policy))
        if not filed:
            # A 128-bit random collision: not a client error, and never silently shared.
            raise ServerError()
        code = self._new_code(credential)
        entry = flow.new_entry(
            credential,
            code_digest(self.digest_key, credential.address, now, code),
            now,
            self.policy,
            body.requested_locale(),
        )
        updated = TokenList(list_id, len(kept), (*kept, entry))
        await self._deliver(request, entry, code, previous=tokens, updated=updated, now=now)
        return await self._state_response(updated, now, sent=True)

    async def resend(self, request: ApiRequest) -> ApiResponse:
        """Send a fresh code for the current credential; the old code stops working."""
        now = int(self.clock())
        tokens = await self._open(request, now, required=True)
        # required=True raises instead of returning None; the assert only narrows the type.
        assert tokens is not None  # noqa: S101  # nosec B101
        entry = tokens.current_entry
        flow.check_resend(entry, now)
        self.limiter.check_destination(entry.credential)
        code = self._new_code(entry.credential)
        fresh = flow.resent(
            entry,
            code_digest(self.digest_key, entry.credential.address, now, code),
            now,
            self.policy,
        )
        updated = flow.replace_current(tokens, fresh, new_list_id())
        # Claimed before charged, as verify does: of N parallel resends with one cookie only
        # the one that wins the claim spends a send, so the limits count exactly what is
        # sent (on one Redis, claim and charge are one script). A refusal hands the
        # unchanged entries back under the new ID.
        await self._claim("send", request, tokens, updated, now)
        await self._deliver(
            request, fresh, code, previous=tokens, updated=updated, now=now, is_resend=True
        )
        return await self._state_response(updated, now, sent=True)

    async def verify(self, request: ApiRequest) -> Response:
        """Check a code; on success run the final hook exactly once."""
        code = parse_code(read_code(request), self.policy.length, self.policy.alphabet)
        now = int(self.clock())
        tokens = await self._open(request, now, required=True)
        # required=True raises instead of returning None; the assert only narrows the type.
        assert tokens is not None  # noqa: S101  # nosec B101
        entry = tokens.current_entry
        flow.check_verifiable(entry, now)

        # Consume before comparing: of any number of concurrent requests carrying this
        # cookie, exactly one gets past this line, so each cookie buys at most one guess.
        # The claimed request then charges the failure before comparing (a success takes it
        # back below), so concurrent wrong guesses can never overshoot the credential's
        # lockout; on one Redis, claim and charge are a single script (one round trip).
        failed_state = flow.replace_current(
            tokens, flow.failed(entry, now, self.policy), new_list_id()
        )
        await self._claim("verify", request, tokens, failed_state, now)

        keys = (self.digest_key, *self.previous_digest_keys)
        if not digest_matches(entry.digest, keys, entry.credential.address, entry.issued_at, code):
            error = flow.incorrect(failed_state.current_entry, now)
            error.headers["Set-Cookie"] = await self._cookie_header(failed_state, now)
            outcomes.code_failed(entry.credential, method="code", outcome="incorrect")
            raise error
        outcomes.code_verified(
            entry.credential, method="code", seconds_since_sent=now - entry.issued_at
        )
        await self.limiter.forget_failures(entry.credential)

        remaining = flow.without_current(tokens, failed_state.list_id, now)
        cookie = (
            self.codec.clear_header()
            if remaining is None
            else await self._cookie_header(remaining, now)
        )
        result = None if self.results is None else self.results.for_browser(entry.credential, now)
        response = await self.final(
            VerifiedCredential(entry.credential, float(now), result), request.starlette()
        )
        response.headers.append("Set-Cookie", cookie)
        return response

    async def _claim(
        self, action: Action, request: ApiRequest, tokens: TokenList, updated: TokenList, now: int
    ) -> None:
        """Claim `tokens`' ID for `updated`, then charge `action` for its current credential.

        A refused charge comes after the claim, so the old cookie is spent: the refusal
        carries the unchanged entries under the new ID, and costs the client nothing.
        """
        refusal = await self.limiter.claim_and_charge(
            action,
            self.ids,
            tokens.list_id,
            updated.list_id,
            flow.lifetime(updated, now),
            request.scope,
            tokens.current_entry.credential,
            now,
        )
        if refusal is not None:
            unchanged = TokenList(updated.list_id, tokens.current, tokens.entries)
            refusal.headers["Set-Cookie"] = await self._cookie_header(unchanged, now)
            raise refusal

    def _new_code(self, credential: Credential) -> str:
        fixed = self.test_codes.get(credential.address)
        return fixed if fixed is not None else self.generate_code(self.policy)

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

    async def _deliver(
        self,
        request: ApiRequest,
        entry: Entry,
        code: str,
        *,
        previous: TokenList | None,
        updated: TokenList,
        now: int,
        is_resend: bool = False,
    ) -> None:
        """Hand the code to the sender; on failure undo the ID change so nothing is lost."""
        if entry.credential.address in self.test_codes:
            return
        message = OutgoingCode(
            credential=entry.credential,
            code=code,
            ttl_seconds=entry.expires_at - now,
            origin_host=self.public_host or request_host(request.header(b"host") or ""),
            locale=entry.locale,
            accept_language=request.header(b"accept-language"),
            is_resend=is_resend,
        )
        try:
            await self.sender.send(message)
        except DeliveryError as error:
            log.warning("delivery failed for channel %s: %s", entry.credential.channel, error)
            outcomes.code_not_sent(entry.credential, resend=is_resend)
            await self._roll_back(previous, updated, now)
            raise SendFailed() from None
        outcomes.code_sent(entry.credential, resend=is_resend)

    async def _roll_back(self, previous: TokenList | None, updated: TokenList, now: int) -> None:
        """Revive the cookie the client still holds and retire the one it never received."""
        try:
            await self.ids.consume(updated.list_id)
            if previous is not None:
                await self.ids.add(previous.list_id, flow.lifetime(previous, now))
        except StoreUnavailable:
            log.warning("could not roll back the cookie ID after a failed delivery")

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
