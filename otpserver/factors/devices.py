"""Trusted devices (SPEC §15): "don't ask again on this device", revocable, without rows.

Trusting a device seals a token (purpose `trusted-device`, bound to the subject, the subject
also inside) for the host to keep in its own HttpOnly cookie. A check opens it and refuses
it when it has expired, when the host names a higher `generation` than the token carries
(durable revocation kept on the host's user row), when the device was revoked (a marker per
device), or when it was issued before the subject's revoked-before marker (revoke all).
Markers live as long as the longest trust, so a revocation outlives every token it covers.

A trusted device only ever waives a second factor: it proves a browser was trusted after a
full sign-in, never who is signing in.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from otpserver.crypto.atrest import AtRestRing, InvalidBlob
from otpserver.encoding import b64url
from otpserver.factors.events import audit
from otpserver.factors.service import BLOB_TEXT, name, name_key
from otpserver.otp.timefmt import iso
from otpserver.settings.factors import FactorSettings
from otpserver.stores.base import (
    CounterStore,
    Gate,
    MarkerAdvance,
    MarkerClaim,
    MarkerPut,
    MarkerStore,
    raise_if_gate_refused,
    take_gate,
)

DEVICE_PURPOSE = "trusted-device"
_VERSION = 1
MAX_GENERATION = 2**53 - 1
"""Generations are JSON integers every client reads exactly."""

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceToken:
    """What a device token holds."""

    device_id: bytes
    subject: str
    issued_at_ms: int
    expires_at: int
    generation: int

    @property
    def public_id(self) -> str:
        """`deviceId`: random, for the host's list of devices and for revoking one."""
        return public_id(self.device_id)


def public_id(device_id: bytes) -> str:
    """The text form of a device id (base64url, no padding)."""
    return b64url(device_id)


def dump(token: DeviceToken) -> bytes:
    """The token's wire form inside its seal (versioned msgpack)."""
    packed: bytes = msgpack.packb(
        [
            _VERSION,
            token.device_id,
            token.subject,
            token.issued_at_ms,
            token.expires_at,
            token.generation,
        ]
    )
    return packed


def load(payload: bytes) -> DeviceToken:
    """The token `dump` wrote; `ValueError` for anything else."""
    try:
        fields = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ValueError("not a device token") from None
    if not isinstance(fields, list) or len(fields) != 6:
        raise ValueError("not a device token")
    version, device_id, subject, issued_at_ms, expires_at, generation = fields
    if (
        version != _VERSION
        or not isinstance(device_id, bytes)
        or not isinstance(subject, str)
        or not all(isinstance(n, int) for n in (issued_at_ms, expires_at, generation))
    ):
        raise ValueError("not a device token")
    return DeviceToken(device_id, subject, issued_at_ms, expires_at, generation)


def decode_public_id(text: str) -> bytes | None:
    """The device id a `deviceId` names, or None when it names none."""
    if len(text) != 22 or not BLOB_TEXT.fullmatch(text):
        return None
    raw = base64.urlsafe_b64decode(text + "==")
    return raw if public_id(raw) == text else None


@dataclass(frozen=True, slots=True)
class TrustedDevices:
    """Trust, check and revoke devices on sealed tokens and revocation markers.

    `name_key` names revocation markers (they must be found from a `deviceId` or a subject
    alone); `previous_name_keys` are read too, so a master-key rotation forgets none.
    """

    ring: AtRestRing
    markers: MarkerStore
    counters: CounterStore
    """Where the calling key's allowance is charged, when a check carries it as a gate."""
    settings: FactorSettings
    name_key: bytes
    previous_name_keys: Sequence[bytes] = ()
    clock: Callable[[], float] = field(default=time.time)

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
        clock: Callable[[], float],
    ) -> TrustedDevices:
        """The service with revocation names keyed from the current and previous master keys."""
        return cls(
            ring=ring,
            markers=markers,
            counters=counters,
            settings=settings,
            name_key=name_key(master_key),
            previous_name_keys=tuple(name_key(key) for key in previous_master_keys),
            clock=clock,
        )

    @property
    def max_seconds(self) -> int:
        """The longest trust, and so how long a revocation must be remembered."""
        return self.settings.trusted_device_days * 86400

    async def trust(self, *, subject: str, days: int | None, generation: int) -> Body:
        """A new device token valid `days` (at most the configured maximum)."""
        now = self.clock()
        lifetime = (days or self.settings.trusted_device_days) * 86400
        token = DeviceToken(
            device_id=secrets.token_bytes(16),
            subject=subject,
            issued_at_ms=int(now * 1000),
            expires_at=int(now) + min(lifetime, self.max_seconds),
            generation=generation,
        )
        device = self.ring.seal(DEVICE_PURPOSE, dump(token), bound_to=subject.encode(), now=now)
        audit(
            "device.trusted",
            {"subject_hmac": self._subject_mac(subject), "device_id": token.public_id},
        )
        return {"device": device, "deviceId": token.public_id, "expires": iso(token.expires_at)}

    async def check(
        self, *, subject: str, device: str, generation: int | None, gate: Gate | None = None
    ) -> Body:
        """Whether `device` is trusted for `subject` now, else why not. `gate` (the caller's
        API key allowance) is charged first in the same step that reads the revocations."""
        now = self.clock()
        opened = self._open(device, subject)
        if opened is None:
            return {"trusted": False, "reason": "invalid"}
        token, stale = opened
        if now >= token.expires_at:
            return {"trusted": False, "reason": "expired"}
        if generation is not None and generation > token.generation:
            return {"trusted": False, "reason": "revoked"}
        if await self._revoked(subject, token, gate, now):
            return {"trusted": False, "reason": "revoked"}
        answer: Body = {
            "trusted": True,
            "deviceId": token.public_id,
            "expires": iso(token.expires_at),
        }
        if stale:
            answer["device"] = self.ring.seal(
                DEVICE_PURPOSE, dump(token), bound_to=subject.encode(), now=now
            )
        return answer

    async def revoke(
        self, *, subject: str, device_id: str | None, gate: Gate | None = None
    ) -> Body:
        """Revoke one device of `subject`, or every device trusted until now. `gate` (the
        caller's API key allowance) is charged in the same store step as the marker."""
        now = self.clock()
        take: MarkerAdvance | MarkerPut | None = None
        if device_id is None:
            take = MarkerAdvance(
                self._all_name(self.name_key, subject), int(now * 1000), self.max_seconds
            )
            revoked = "all"
        else:
            raw = decode_public_id(device_id)
            if raw is not None:
                # Put only if absent: a marker already there was written for the same
                # device, whose every token it outlives, so there is nothing to refresh.
                take = MarkerPut(
                    self._one_name(self.name_key, subject, raw), b"1", self.max_seconds
                )
            revoked = device_id
        if take is not None:
            claim = MarkerClaim(take=take, failures=(), gate=take_gate(gate))
            outcome = await self.markers.claim(claim, self.counters, int(now * 1000))
            raise_if_gate_refused(gate, outcome.gate)
        audit("device.revoked", {"subject_hmac": self._subject_mac(subject), "device_id": revoked})
        return {"revoked": revoked}

    def _open(self, device: str, subject: str) -> tuple[DeviceToken, bool] | None:
        """The token and whether an older master key sealed it; None for any defect (stray
        characters included: the base64 decoder would skip them)."""
        if not BLOB_TEXT.fullmatch(device):
            return None
        try:
            opened = self.ring.open(DEVICE_PURPOSE, device, bound_to=subject.encode())
            token = load(opened.payload)
        except (InvalidBlob, ValueError):
            return None
        return (token, opened.stale) if token.subject == subject else None

    async def _revoked(
        self, subject: str, token: DeviceToken, gate: Gate | None, now: float
    ) -> bool:
        """Whether a revocation covers `token`, under the current or a previous master key's
        names: every marker read in one step, the gate charged first in it."""
        keys = (self.name_key, *self.previous_name_keys)
        names = tuple(
            name
            for key in keys
            for name in (
                self._all_name(key, subject),
                self._one_name(key, subject, token.device_id),
            )
        )
        read = await self.markers.read(names, take_gate(gate), self.counters, int(now * 1000))
        raise_if_gate_refused(gate, read.gate)
        every_device, one_device = read.values[0::2], read.values[1::2]
        return any(
            before is not None and before.isdigit() and token.issued_at_ms <= int(before)
            for before in every_device
        ) or any(revoked is not None for revoked in one_device)

    @staticmethod
    def _all_name(key: bytes, subject: str) -> bytes:
        return name(key, b"devices-revoked-before", subject.encode())

    @staticmethod
    def _one_name(key: bytes, subject: str, device_id: bytes) -> bytes:
        return name(key, b"device-revoked", subject.encode(), device_id)

    def _subject_mac(self, subject: str) -> str:
        return name(self.name_key, b"audit-subject", subject.encode()).hex()[:32]
