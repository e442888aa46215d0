"""One call per outcome of a verification flow: the audit event and the metrics together.

The flows call these where each outcome happens, so counting and auditing stay in step
and each call site stays one line. `method` is how a code was presented (`code`, `link`;
`totp` and `backup_code` for the other factors).
"""

from __future__ import annotations

from collections.abc import Sequence

from otpserver.observability import audit, metrics
from otpserver.observability.audit import Addressed

LOCKOUT_LIMIT = "failures"
"""The limit that locks a credential after too many wrong codes (`otpserver.limits.rules`)."""


def code_sent(credential: Addressed, *, resend: bool) -> None:
    """A code reached the provider: a new challenge, or a resend of a pending one."""
    if not resend:
        metrics.challenge_created(credential.channel)
    audit.emit("otp.sent", credential=credential, resend=resend)


def code_not_sent(credential: Addressed, *, resend: bool) -> None:
    """The provider refused a code, or could not be reached."""
    audit.emit("otp.send_failed", credential=credential, resend=resend)


def code_verified(credential: Addressed, *, method: str, seconds_since_sent: float) -> None:
    """A correct code: the credential is verified."""
    metrics.verification(credential.channel, method, "approved", seconds_since_sent)
    audit.emit("otp.verified", credential=credential, method=method)


def code_failed(
    credential: Addressed, *, method: str, outcome: str, attempts_left: int | None = None
) -> None:
    """A code that did not verify: `outcome` is incorrect, expired, too_many_attempts, ..."""
    metrics.verification(credential.channel, method, outcome)
    audit.emit(
        "otp.failed",
        credential=credential,
        method=method,
        outcome=outcome,
        attempts_left=attempts_left,
    )


def rate_limited(action: str, limits: Sequence[str]) -> None:
    """An abuse limit refused `action` (send, switch, verify); a locked credential is
    `otp.locked`, every other limit `otp.rate_limited`."""
    for limit in limits:
        metrics.rate_limited(limit)
    event = "otp.locked" if LOCKOUT_LIMIT in limits else "otp.rate_limited"
    audit.emit(event, action=action, limits=",".join(limits))
