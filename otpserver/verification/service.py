"""The verification flow with its I/O: start, resend, check and cancel a pending code.

Carriers (the browser's cookie, a backend's challenge token, an emailed link) present the
same pending state, a `TokenList`, and only differ in how they carry it; everything a step
decides happens here, once. Ordering is the security argument, so each step reads top to
bottom as: refuse what needs no state change → charge the limits and change the single-use
ID in one store step (`Limiter`, `IdStore.claim`) → act → hand the new state back for the
carrier to seal.

- A start charges first: a refused charge sends nothing and changes no ID.
- A resend or a check spends the carrier's ID first, so of N concurrent requests carrying
  one state exactly one acts, and only that one is charged: N replays are one send or one
  guess, not N. A refusal after the spend hands the unchanged entries back under the new ID
  (`HandBack`), so it costs the client nothing.
- A check compares the code before its store step and lets that one step spend the ID and
  either charge a failure or clear the failures: one round trip, and the outcome still
  counts only for the one caller whose spend succeeded.

Each step takes an optional `Gate` (a `/v1` caller's API key allowance), charged first in
the step's one claim, so the key costs no round trip of its own; a step that ends before its
claim leaves the gate untaken, for its owner to charge.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
from otpserver.errors import OtpError, SendFailed, ServerError, StoreUnavailable
from otpserver.limits.limiter import Action, Limiter
from otpserver.observability import outcomes
from otpserver.otp import flow
from otpserver.otp.codes import code_digest, digest_matches
from otpserver.otp.credentials import Credential
from otpserver.otp.payload import LIST_ID_BYTES, Entry, TokenList
from otpserver.otp.policy import CodeGenerator, OtpPolicy
from otpserver.stores.base import Claim, Gate, IdStore, raise_if_gate_refused, take_gate
from otpserver.verification.links import LinkTokens

log = logging.getLogger("otpserver.verification")


def new_list_id() -> bytes:
    """A fresh random single-use ID from the OS CSPRNG."""
    return os.urandom(LIST_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is asking, as far as limits and messages need to know.

    `address` is the per-address limit bucket (the client's address behind trusted
    proxies, or the end user's address a trusted backend forwards); `origin_host` is the
    site name a message shows; `accept_language` the raw header, for the template language.
    """

    address: str
    origin_host: str
    accept_language: str | None = None


class HandBack(Exception):
    """A refusal that came after the carrier's ID was spent.

    The old carrier is dead, so the carrier must present `state` (the pending entries under
    their new ID) together with `error`, or the client would lose its pending codes.
    """

    def __init__(self, error: OtpError, state: TokenList) -> None:
        super().__init__(error.code)
        self.error = error
        self.state = state


@dataclass(frozen=True, slots=True)
class Started:
    """A start's outcome: the state to carry, and whether a code went out."""

    state: TokenList
    sent: bool


@dataclass(frozen=True, slots=True)
class Approved:
    """A correct code: the credential it proves, and what the carrier still holds after it
    (the other pending credentials, under a new ID), or None when nothing is left."""

    credential: Credential
    verified_at: int
    remaining: TokenList | None


@dataclass(frozen=True, slots=True)
class Verifications:
    """The flow's steps, bound to their collaborators."""

    policy: OtpPolicy
    generate_code: CodeGenerator
    sender: Sender
    ids: IdStore
    limiter: Limiter
    digest_key: bytes
    test_codes: Mapping[str, str] = field(default_factory=dict)
    """Development test identities: fixed codes, never delivered."""
    previous_digest_keys: tuple[bytes, ...] = ()
    """Digest keys of `OTP_MASTER_KEY_PREVIOUS`: codes sent before a rotation still verify."""
    public_host: str | None = None
    """The site name for messages; None (development only) means the requester's host."""
    links: LinkTokens | None = None
    """Seals sign-in links (SPEC §18); None: messages never carry one."""

    async def start(
        self,
        held: TokenList | None,
        credential: Credential,
        *,
        locale: str | None,
        requester: Requester,
        now: int,
        link_base: str | None = None,
        gate: Gate | None = None,
    ) -> Started:
        """Send a code to `credential`, or make an already pending one current again.

        `held` is the state the carrier brought, None when it brought none (or none that
        opened): a replayed or superseded one starts afresh and keeps nothing from it.
        With `link_base` (`https://host`), an email also carries a sign-in link under it.
        """
        self.limiter.check_destination(credential)
        if held is not None:
            index = flow.find_live(held, credential, now)
            if index is not None:
                current = TokenList(new_list_id(), index, held.entries)
                if await self.limiter.charge_then_file(
                    self.ids,
                    "switch",
                    spend=held.list_id,
                    file=current.list_id,
                    ttl_seconds=flow.lifetime(current, now),
                    credential=credential,
                    address=requester.address,
                    now=now,
                    gate=gate,
                ):
                    return Started(current, sent=False)
                held = None

        kept = flow.live_entries(held, now)
        flow.check_room(kept, self.policy)
        list_id = new_list_id()
        # Every start charged here sends: a lost spend only starts a fresh list.
        filed = await self.limiter.charge_then_file(
            self.ids,
            "send",
            spend=None if held is None else held.list_id,
            file=list_id,
            ttl_seconds=flow.lifetime_with_new(kept, now, self.policy),
            credential=credential,
            address=requester.address,
            now=now,
            gate=gate,
        )
        if held is not None and not filed:
            held, kept = None, ()
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
            locale,
        )
        updated = TokenList(list_id, len(kept), (*kept, entry))
        await self._deliver(
            entry, code, requester, previous=held, updated=updated, now=now, link_base=link_base
        )
        return Started(updated, sent=True)

    async def resend(
        self,
        held: TokenList,
        *,
        requester: Requester,
        now: int,
        link_base: str | None = None,
        gate: Gate | None = None,
    ) -> TokenList:
        """Send a fresh code for the current credential; the old code (and link) stops working."""
        entry = held.current_entry
        flow.check_resend(entry, now)
        self.limiter.check_destination(entry.credential)
        code = self._new_code(entry.credential)
        fresh = flow.resent(
            entry,
            code_digest(self.digest_key, entry.credential.address, now, code),
            now,
            self.policy,
        )
        updated = flow.replace_current(held, fresh, new_list_id())
        await self._spend("send", held, updated, requester, now, gate)
        await self._deliver(
            fresh,
            code,
            requester,
            previous=held,
            updated=updated,
            now=now,
            is_resend=True,
            link_base=link_base,
        )
        return updated

    async def check(
        self,
        held: TokenList,
        code: str,
        *,
        requester: Requester,
        now: int,
        gate: Gate | None = None,
        via_link: bool = False,
    ) -> Approved:
        """Check `code` (already format-checked) against the current entry; `via_link` when
        its sign-in link presented it, for the audit trail and the metrics.

        Raises the domain refusal (`OTP:EXPIRED`, `OTP:TOO_MANY_ATTEMPTS`, a temporary
        block) before any state change, and `HandBack` for a wrong code or a limit refusal
        after the spend.
        """
        entry = held.current_entry
        flow.check_verifiable(entry, now)
        presented = "link" if via_link else "code"
        keys = (self.digest_key, *self.previous_digest_keys)
        correct = digest_matches(
            entry.digest, keys, entry.credential.address, entry.issued_at, code
        )
        new_id = new_list_id()
        if not correct:
            failed_state = flow.replace_current(held, flow.failed(entry, now, self.policy), new_id)
            await self._spend("guess", held, failed_state, requester, now, gate)
            outcomes.code_failed(entry.credential, method=presented, outcome="incorrect")
            raise HandBack(flow.incorrect(failed_state.current_entry, now), failed_state)
        # The unchanged entries go under the new ID, so a refusal can hand them back; after
        # a success the other pending credentials live on under it. With none left, the ID
        # is filed only for a refusal: an approval that ends the flow leaves nothing behind.
        unchanged = TokenList(new_id, held.current, held.entries)
        remaining = flow.without_current(held, new_id, now)
        await self._spend(
            "correct", held, unchanged, requester, now, gate, file_when_refused=remaining is None
        )
        outcomes.code_verified(
            entry.credential, method=presented, seconds_since_sent=now - entry.issued_at
        )
        return Approved(entry.credential, now, remaining)

    async def cancel(self, held: TokenList, *, now: int, gate: Gate | None = None) -> bool:
        """Spend the state's ID, so no copy of its carrier works again; False when it was
        already spent (replayed or superseded)."""
        if gate is None:
            return await self.ids.consume(held.list_id)
        # A claim with nothing to file or charge is the same consume, with the gate in it.
        outcome = await self.ids.claim(
            Claim(
                order="spend_first",
                spend=held.list_id,
                file=None,
                ttl_seconds=0,
                counters=(),
                gate=take_gate(gate),
            ),
            self.limiter.counters,
            now_ms=now * 1000,
        )
        raise_if_gate_refused(gate, outcome.gate)
        return outcome.claimed

    async def _spend(
        self,
        action: Action,
        held: TokenList,
        updated: TokenList,
        requester: Requester,
        now: int,
        gate: Gate | None,
        *,
        file_when_refused: bool = False,
    ) -> None:
        """Spend `held`'s ID for `updated`'s, and charge `action` for the current credential
        (`updated`'s ID filed only for a refusal when `file_when_refused`)."""
        refusal = await self.limiter.spend_then_charge(
            self.ids,
            action,
            spend=held.list_id,
            file=updated.list_id,
            ttl_seconds=flow.lifetime(updated, now),
            credential=held.current_entry.credential,
            address=requester.address,
            now=now,
            gate=gate,
            file_when_refused=file_when_refused,
        )
        if refusal is not None:
            raise HandBack(refusal, TokenList(updated.list_id, held.current, held.entries))

    def _new_code(self, credential: Credential) -> str:
        fixed = self.test_codes.get(credential.address)
        return fixed if fixed is not None else self.generate_code(self.policy)

    async def _deliver(
        self,
        entry: Entry,
        code: str,
        requester: Requester,
        *,
        previous: TokenList | None,
        updated: TokenList,
        now: int,
        is_resend: bool = False,
        link_base: str | None = None,
    ) -> None:
        """Hand the code to the sender; on failure undo the ID change so nothing is lost."""
        if entry.credential.address in self.test_codes:
            return
        link = None
        if link_base is not None and self.links is not None and entry.credential.channel == "email":
            link = f"{link_base}/l/{await self.links.seal(entry, code, now)}"
        message = OutgoingCode(
            credential=entry.credential,
            code=code,
            ttl_seconds=entry.expires_at - now,
            origin_host=self.public_host or requester.origin_host,
            locale=entry.locale,
            accept_language=requester.accept_language,
            is_resend=is_resend,
            link=link,
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
        """Revive the carrier the client still holds and retire the one it never received."""
        try:
            await self.ids.consume(updated.list_id)
            if previous is not None:
                await self.ids.add(previous.list_id, flow.lifetime(previous, now))
        except StoreUnavailable:
            log.warning("could not roll back the carrier's ID after a failed delivery")
