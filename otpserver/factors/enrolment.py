"""What a TOTP enrolment blob and a pending enrolment token hold, and their wire form.

Both are versioned msgpack inside an at-rest seal (purposes `totp-enrolment` and
`totp-pending`, bound to the subject). `marker_key` is a random key that never leaves the
blob: the enrolment's replay guard and failure counter are named with it, so their names
stay the same when the master key rotates and link to nothing the store could recognise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import msgpack

from otpserver.encoding import b64url
from otpserver.factors.totp import ALGORITHMS, TotpParameters, new_secret

PENDING_SECONDS = 600
"""How long a pending enrolment may wait for its confirming code."""

_VERSION = 1


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One authenticator: its secret and parameters, and the random names of its markers."""

    enrolment_id: bytes
    marker_key: bytes
    secret: bytes
    parameters: TotpParameters
    created_at: int

    @property
    def public_id(self) -> str:
        """The id the host may show and log (`enrolmentId`): random, not derived from secrets."""
        return b64url(self.enrolment_id)


def new_enrolment(parameters: TotpParameters, now: float) -> Enrolment:
    """A fresh enrolment with a new secret from the OS CSPRNG."""
    return Enrolment(
        enrolment_id=secrets.token_bytes(16),
        marker_key=secrets.token_bytes(32),
        secret=new_secret(parameters.algorithm),
        parameters=parameters,
        created_at=int(now),
    )


def dump(enrolment: Enrolment, *, expires_at: int = 0) -> bytes:
    """The enrolment's wire form; a pending token also carries when it expires."""
    p = enrolment.parameters
    packed: bytes = msgpack.packb(
        [
            _VERSION,
            enrolment.enrolment_id,
            enrolment.marker_key,
            enrolment.secret,
            p.digits,
            p.period,
            p.algorithm,
            enrolment.created_at,
            expires_at,
        ]
    )
    return packed


def load(payload: bytes) -> tuple[Enrolment, int]:
    """The enrolment and expiry `dump` wrote; `ValueError` for anything else."""
    try:
        fields = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ValueError("not an enrolment") from None
    if not isinstance(fields, list) or len(fields) != 9:
        raise ValueError("not an enrolment")
    version, enrolment_id, marker_key, secret, digits, period, algorithm, created_at, expires_at = (
        fields
    )
    if (
        version != _VERSION
        or not all(isinstance(b, bytes) for b in (enrolment_id, marker_key, secret))
        or len(secret) < 20
        or algorithm not in ALGORITHMS
        or not isinstance(created_at, int)
        or not isinstance(expires_at, int)
    ):
        raise ValueError("not an enrolment")
    try:
        parameters = TotpParameters(digits=digits, period=period, algorithm=algorithm)
    except TypeError:
        raise ValueError("not an enrolment") from None
    return Enrolment(enrolment_id, marker_key, secret, parameters, created_at), expires_at
