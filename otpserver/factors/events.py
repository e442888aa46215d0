"""Audit events of the second factors, through the server's one audit trail.

Events (SPEC §16): `totp.enrolled`, `totp.verified`, `backup_codes.generated`,
`backup_code.redeemed`. Their fields never hold a subject, a code, a secret or a blob: the
subject appears as a keyed hash (`subject_hmac`), enrolments and sets by their random
public ids.
"""

from __future__ import annotations

from otpserver.observability import audit as trail


def audit(event: str, fields: dict[str, str | int]) -> None:
    """Record one second-factor outcome on the installed audit trail (log and webhook)."""
    trail.emit(event, credential=None, **fields)
