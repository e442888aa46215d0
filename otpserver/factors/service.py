"""The second-factor operations behind the `/v1` routes: seal, open, compare, claim markers.

Each check opens the host's blob with the at-rest ring (bound to the subject, one purpose
per kind), compares the code (pure CPU), then makes one atomic store step, a `MarkerClaim`:
it charges the failure counter (refusing a locked credential), takes the code's single-use
marker (`advance` of the enrolment's last accepted TOTP step, or the creation of a backup
code's spent marker) and, when taken, clears the failures; a route's API key charge rides
in front as the step's gate. So the outcome of the comparison counts only for the request
whose take wins, and a right code costs one round trip, the key's charge included. Every
domain outcome is a `status` in a 200 answer (SPEC §10); only malformed input is an error
(`OtpInvalidFormat`, 400).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpserver.crypto.atrest import AtRestRing, InvalidBlob, Opened
from otpserver.errors import OtpInvalidFormat
from otpserver.factors import backup_codes, enrolment
from otpserver.factors.enrolment import PENDING_SECONDS, Enrolment, new_enrolment
from otpserver.factors.events import audit
from otpserver.factors.qr import qr_svg
from otpserver.factors.totp import (
    TotpParameters,
    last_acceptable_at,
    matching_step,
    otpauth_uri,
    parse_code,
    secret_text,
)
from otpserver.settings.factors import FactorSettings
from otpserver.stores.base import (
    CounterStore,
    Gate,
    MarkerAdvance,
    MarkerClaim,
    MarkerPut,
    MarkerStore,
    newer_than,
    raise_if_gate_refused,
    take_gate,
)
from otpserver.stores.counters import Counter, retry_after_seconds

PENDING_PURPOSE = "totp-pending"
ENROLMENT_PURPOSE = "totp-enrolment"
SET_PURPOSE = "backup-codes"

Body = dict[str, Any]
BLOB_TEXT = re.compile(r"[A-Za-z0-9_-]{1,8192}")


class ResultIssuer(Protocol):
    """Signs the result of an approval (SPEC §11; `otpserver.results.ResultSigner`)."""

    def issue(
        self,
        *,
        audience: str,
        subject: str | None,
        method: str,
        credential: None,
        nonce: str | None,
        now: float,
    ) -> str: ...


def name_key(master_key: bytes) -> bytes:
    """The key that names a subject's markers and counters, derived from a master key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"otpserver/factor-names/v1"
    ).derive(master_key)


def name(key: bytes, label: bytes, *parts: bytes) -> bytes:
    """A marker or counter name: HMAC-SHA256 under `key` of the label and parts, each
    length-prefixed, so no two kinds of name and no two splits of the parts ever collide."""
    message = b"".join(len(part).to_bytes(2, "big") + part for part in (label, *parts))
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SecondFactors:
    """TOTP and backup codes on the host's sealed blobs and the shared markers and counters.

    `name_key` names what belongs to a subject rather than to one blob (the backup-code
    not-before marker and failure counter); `previous_name_keys` are the same key under
    earlier master keys, read so a rotation never forgets which sets were superseded.
    """

    ring: AtRestRing
    markers: MarkerStore
    counters: CounterStore
    issuer: ResultIssuer
    settings: FactorSettings
    name_key: bytes
    previous_name_keys: Sequence[bytes] = ()
    clock: Callable[[], float] = field(default=time.time)

    def _open(self, purpose: str, token: str, subject: str) -> Opened:
        """The blob's payload; `InvalidBlob` for any defect, stray characters included (the
        base64 decoder would skip them, so a blob with one inserted would still open)."""
        if not BLOB_TEXT.fullmatch(token):
            raise InvalidBlob()
        return self.ring.open(purpose, token, bound_to=subject.encode())

    @classmethod
    def build(
        cls,
        settings: FactorSettings,
        *,
        master_key: bytes,
        previous_master_keys: Sequence[bytes],
        ring: AtRestRing,
        markers: MarkerStore,
        counters: CounterStore,
        issuer: ResultIssuer,
        clock: Callable[[], float],
    ) -> SecondFactors:
        """The service with its names keyed from the current and previous master keys."""
        return cls(
            ring=ring,
            markers=markers,
            counters=counters,
            issuer=issuer,
            settings=settings,
            name_key=name_key(master_key),
            previous_name_keys=tuple(name_key(key) for key in previous_master_keys),
            clock=clock,
        )

    # --- TOTP -----------------------------------------------------------------------------

    async def enrol(
        self, *, subject: str, account: str, issuer: str | None, parameters: TotpParameters
    ) -> Body:
        """A new secret, its URI and QR code, and the pending token that confirms it."""
        now = self.clock()
        new = new_enrolment(parameters, now)
        pending = self.ring.seal(
            PENDING_PURPOSE,
            enrolment.dump(new, expires_at=int(now) + PENDING_SECONDS),
            bound_to=subject.encode(),
            now=now,
        )
        uri = otpauth_uri(
            new.secret, parameters, account=account, issuer=issuer or self.settings.totp_issuer
        )
        return {
            "pending": pending,
            "uri": uri,
            "secret": secret_text(new.secret),
            "qr": qr_svg(uri),
        }

    async def confirm(
        self, *, subject: str, pending: str, code: str, gate: Gate | None = None
    ) -> Body:
        """Activate a pending enrolment with a code from the app; its step is spent. `gate`
        (the caller's API key allowance) is charged first in the check's one store step."""
        now = self.clock()
        try:
            opened = self._open(PENDING_PURPOSE, pending, subject)
            new, expires_at = enrolment.load(opened.payload)
        except (InvalidBlob, ValueError):
            return {"status": "invalid"}
        if expires_at <= now:
            return {"status": "expired"}
        refusal = await self._check_totp(new, code, now, gate)
        if refusal is not None:
            return refusal
        blob = self._seal_enrolment(new, subject, now)
        audit(
            "totp.enrolled",
            {"subject_hmac": self._subject_mac(subject), "enrolment_id": new.public_id},
        )
        return {"status": "approved", "enrolment": blob, "enrolmentId": new.public_id}

    async def verify(
        self,
        *,
        audience: str,
        subject: str,
        enrolment_blob: str,
        code: str,
        nonce: str | None,
        gate: Gate | None = None,
    ) -> Body:
        """Check a code against an enrolment; approve each step at most once. `gate` (the
        caller's API key allowance) is charged first in the check's one store step."""
        now = self.clock()
        try:
            opened = self._open(ENROLMENT_PURPOSE, enrolment_blob, subject)
            current, _ = enrolment.load(opened.payload)
        except (InvalidBlob, ValueError):
            return {"status": "invalid"}
        resealed = (
            {"enrolment": self._seal_enrolment(current, subject, now)} if opened.stale else {}
        )
        refusal = await self._check_totp(current, code, now, gate)
        if refusal is not None:
            return {**refusal, **resealed}
        result = self.issuer.issue(
            audience=audience, subject=subject, method="totp", credential=None, nonce=nonce, now=now
        )
        audit(
            "totp.verified",
            {"subject_hmac": self._subject_mac(subject), "enrolment_id": current.public_id},
        )
        return {
            "status": "approved",
            "result": result,
            "enrolmentId": current.public_id,
            **resealed,
        }

    async def _check_totp(
        self, current: Enrolment, text: str, now: float, gate: Gate | None = None
    ) -> Body | None:
        """None when `text` is a fresh code of `current`, else the refusal to answer."""
        code = parse_code(text, current.parameters.digits)
        if code is None:
            raise OtpInvalidFormat(
                f"Send the {current.parameters.digits}-digit code the app shows."
            )
        failures = Counter(
            "totp_failures",
            name(current.marker_key, b"totp-failures"),
            self.settings.totp_max_failures,
            self.settings.totp_failure_window_seconds * 1000,
        )
        window = self.settings.totp_window
        step = matching_step(current.secret, code, now, current.parameters, window)
        take = None
        if step is not None:
            # An atomic compare-and-set: of any number of requests on any number of
            # instances carrying codes of this step or earlier ones, at most one takes it.
            # The guard lives until the step has left every window (plus a period for
            # clocks that disagree).
            ttl = last_acceptable_at(step, current.parameters, window) - now
            ttl += current.parameters.period
            take = MarkerAdvance(name(current.marker_key, b"totp-step"), step, ttl)
        # Compared first, yet counted as if charged before comparing: the one step refuses a
        # locked enrolment before the marker, and a code that is wrong, replayed or beaten
        # to its step by a parallel request stays charged.
        outcome = await self.markers.claim(
            MarkerClaim(take=take, failures=(failures,), gate=take_gate(gate)),
            self.counters,
            int(now * 1000),
        )
        raise_if_gate_refused(gate, outcome.gate)
        if not outcome.decision.allowed:
            return {"status": "locked", "retryAfter": retry_after_seconds(outcome.decision)}
        if not outcome.taken:
            return {"status": "incorrect"}
        return None

    def _seal_enrolment(self, current: Enrolment, subject: str, now: float) -> str:
        return self.ring.seal(
            ENROLMENT_PURPOSE, enrolment.dump(current), bound_to=subject.encode(), now=now
        )

    # --- Backup codes ---------------------------------------------------------------------

    async def generate(self, *, subject: str, count: int) -> Body:
        """A new set, shown once; every older set of the subject stops working."""
        now = self.clock()
        codes = backup_codes.new_codes(count)
        # scrypt is CPU-bound (tens of ms a code): off the event loop, so other requests run.
        code_set = await asyncio.to_thread(backup_codes.new_set, codes, now)
        await self.markers.advance(
            self._not_before_name(self.name_key, subject),
            code_set.created_at_ms,
            self.settings.backup_set_max_seconds,
        )
        blob = self._seal_set(code_set, subject, now)
        audit(
            "backup_codes.generated",
            {
                "subject_hmac": self._subject_mac(subject),
                "set_id": code_set.public_id,
                "count": count,
            },
        )
        return {"codes": codes, "set": blob, "setId": code_set.public_id}

    async def redeem(
        self,
        *,
        audience: str,
        subject: str,
        set_blob: str,
        code: str,
        nonce: str | None,
        gate: Gate | None = None,
    ) -> Body:
        """Spend one code of a set: at most once, in parallel and after a host rollback.
        `gate` (the caller's API key allowance) is charged first in its one store step."""
        now = self.clock()
        now_ms = int(now * 1000)
        try:
            opened = self._open(SET_PURPOSE, set_blob, subject)
            code_set = backup_codes.load(opened.payload)
        except (InvalidBlob, ValueError):
            return {"status": "invalid"}
        resealed = {"set": self._seal_set(code_set, subject, now)} if opened.stale else {}
        max_life_ms = self.settings.backup_set_max_seconds * 1000
        if now_ms >= code_set.created_at_ms + max_life_ms:
            return {"status": "expired", **resealed}
        normalised = backup_codes.normalise(code)
        if normalised is None:
            # A superseded set answers `expired` whatever was typed, as it always has; only
            # malformed input pays for reading the not-before markers on their own.
            if await self._superseded(subject, code_set.created_at_ms):
                return {"status": "expired", **resealed}
            raise OtpInvalidFormat("Send a backup code: 16 letters and digits.")
        failures = Counter(
            "backup_failures",
            name(self.name_key, b"backup-failures", subject.encode()),
            self.settings.backup_max_failures,
            self.settings.backup_failure_window_seconds * 1000,
        )
        # Hashed before the store says whether the subject is locked out or the set
        # superseded: knowing that first would cost a right code a second round trip. So a
        # locked subject's redemptions still cost scrypt (tens of ms, in a thread), and what
        # bounds that work is the API key's own rate limit (`OTP_API_KEY_REQUESTS`): charged
        # in this same step, and a key seen refused is answered before any hashing
        # (`otpserver.v1.auth.authorised`). The lockout still decides every outcome, since no
        # guess counts unless it is charged.
        digest = await asyncio.to_thread(backup_codes.hash_code, normalised, code_set.salt)
        index = backup_codes.find(code_set, digest)
        take = None
        if index is not None and not code_set.is_used(index):
            # The spent marker, not the used bit, is what makes a code single use: of
            # parallel redemptions exactly one takes it, and a host database rolled back to a
            # copy of the set where the bit is clear still meets the marker, which lives as
            # long as the set.
            spent = name(code_set.marker_key, b"backup-spent", index.to_bytes(1, "big"))
            ttl = (code_set.created_at_ms + max_life_ms - now_ms) / 1000
            take = MarkerPut(spent, b"1", ttl)
        outcome = await self.markers.claim(
            MarkerClaim(
                take=take,
                failures=(failures,),
                not_before=self._not_before_names(subject),
                issued_at_ms=code_set.created_at_ms,
                gate=take_gate(gate),
            ),
            self.counters,
            now_ms,
        )
        raise_if_gate_refused(gate, outcome.gate)
        if outcome.superseded:
            return {"status": "expired", **resealed}
        if not outcome.decision.allowed:
            retry_after = retry_after_seconds(outcome.decision)
            return {"status": "locked", "retryAfter": retry_after, **resealed}
        if index is None or not outcome.taken:
            return {"status": "incorrect", **resealed}
        used = code_set.with_used(index)
        result = self.issuer.issue(
            audience=audience,
            subject=subject,
            method="backup_code",
            credential=None,
            nonce=nonce,
            now=now,
        )
        audit(
            "backup_code.redeemed",
            {
                "subject_hmac": self._subject_mac(subject),
                "set_id": used.public_id,
                "remaining": used.remaining,
            },
        )
        return {
            "status": "approved",
            "remaining": used.remaining,
            "set": self._seal_set(used, subject, now),
            "setId": used.public_id,
            "result": result,
        }

    def _not_before_names(self, subject: str) -> tuple[bytes, ...]:
        """The subject's not-before markers under the current and every previous master key,
        so a rotation never forgets which sets were superseded."""
        return tuple(
            self._not_before_name(key, subject) for key in (self.name_key, *self.previous_name_keys)
        )

    async def _superseded(self, subject: str, created_at_ms: int) -> bool:
        """Whether a newer set than one created at `created_at_ms` was generated."""
        for marker in self._not_before_names(subject):
            if newer_than(await self.markers.get(marker), created_at_ms):
                return True
        return False

    @staticmethod
    def _not_before_name(key: bytes, subject: str) -> bytes:
        return name(key, b"backup-not-before", subject.encode())

    def _seal_set(self, code_set: backup_codes.CodeSet, subject: str, now: float) -> str:
        return self.ring.seal(
            SET_PURPOSE, backup_codes.dump(code_set), bound_to=subject.encode(), now=now
        )

    def _subject_mac(self, subject: str) -> str:
        return name(self.name_key, b"audit-subject", subject.encode()).hex()[:32]
