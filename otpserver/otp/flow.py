"""The pure state machine of pending codes: what create, resend and verify do to a cookie.

Nothing here does I/O or reads a clock: every function takes `now` (whole Unix seconds)
and returns new immutable values or raises the client-visible error. The HTTP handlers
wrap these steps with the store (single-use IDs), the envelope and the sender.
"""

from __future__ import annotations

from otpserver.errors import (
    OtpExpired,
    OtpIncorrect,
    ResendNotAllowed,
    TooManyAttempts,
    TooManyCredentials,
    VerificationNotAllowed,
)
from otpserver.otp.credentials import Credential
from otpserver.otp.payload import Entry, TokenList
from otpserver.otp.policy import OtpPolicy
from otpserver.otp.timefmt import iso


def is_live(entry: Entry, now: int) -> bool:
    """A live entry can still be verified: not expired and attempts left."""
    return now < entry.expires_at and entry.attempts_left > 0


def find_live(tokens: TokenList | None, credential: Credential, now: int) -> int | None:
    """Index of the live entry for `credential`, if the cookie holds one."""
    if tokens is None:
        return None
    for index, entry in enumerate(tokens.entries):
        if entry.credential == credential and is_live(entry, now):
            return index
    return None


def live_entries(tokens: TokenList | None, now: int) -> tuple[Entry, ...]:
    """The entries worth keeping when a cookie is rewritten."""
    if tokens is None:
        return ()
    return tuple(e for e in tokens.entries if is_live(e, now))


def new_entry(
    credential: Credential, digest: bytes, now: int, policy: OtpPolicy, locale: str | None
) -> Entry:
    """A freshly sent code for `credential`, with the policy's full allowances."""
    return Entry(
        credential=credential,
        digest=digest,
        issued_at=now,
        expires_at=now + policy.ttl_seconds,
        attempts_left=policy.max_attempts,
        resends_left=policy.max_resends,
        resend_at=now + policy.resend_cooldown_seconds,
        locale=locale,
    )


def check_room(kept: tuple[Entry, ...], policy: OtpPolicy) -> None:
    """Refuse a new credential when the cookie already holds the maximum of live ones."""
    if len(kept) >= policy.max_credentials:
        raise TooManyCredentials(extra={"maxCredentials": policy.max_credentials})


def check_resend(entry: Entry, now: int) -> None:
    """Raise unless a new code may be sent for `entry` at `now`."""
    if now >= entry.expires_at:
        raise OtpExpired()
    if entry.attempts_left <= 0:
        raise TooManyAttempts()
    if entry.resends_left <= 0:
        # No resend will ever be allowed for this entry; a new one can be created once
        # this one expires, so that is when the client may try again.
        retry_after = entry.expires_at - now
        raise ResendNotAllowed(
            "No more codes can be sent for this verification.",
            extra={"resendBlock": None, "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
    if now < entry.resend_at:
        retry_after = entry.resend_at - now
        raise ResendNotAllowed(
            extra={"resendBlock": iso(entry.resend_at), "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def resent(entry: Entry, digest: bytes, now: int, policy: OtpPolicy) -> Entry:
    """The entry after a resend: a new code and lifetime; attempts are not reset."""
    return entry._replace(
        digest=digest,
        issued_at=now,
        expires_at=now + policy.ttl_seconds,
        resends_left=entry.resends_left - 1,
        resend_at=now + policy.resend_cooldown_seconds,
    )


def check_verifiable(entry: Entry, now: int) -> None:
    """Raise unless a code may be checked against `entry` at `now`."""
    if now >= entry.expires_at:
        raise OtpExpired()
    if entry.attempts_left <= 0:
        raise TooManyAttempts()
    if now < entry.blocked_until:
        retry_after = entry.blocked_until - now
        raise VerificationNotAllowed(
            extra={"otpBlock": iso(entry.blocked_until), "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def failed(entry: Entry, now: int, policy: OtpPolicy) -> Entry:
    """The entry after a wrong code: one attempt fewer, and perhaps a temporary block."""
    attempts_left = entry.attempts_left - 1
    block = policy.block_after(policy.max_attempts - attempts_left) if attempts_left else 0
    return entry._replace(
        attempts_left=attempts_left,
        blocked_until=now + block if block else entry.blocked_until,
    )


def incorrect(entry: Entry, now: int) -> OtpIncorrect:
    """The error answering a wrong code, carrying what the client may do next."""
    blocked = now < entry.blocked_until
    return OtpIncorrect(
        extra={
            "attemptsLeft": entry.attempts_left,
            "otpBlock": iso(entry.blocked_until) if blocked else None,
        }
    )


def replace_current(tokens: TokenList, entry: Entry, list_id: bytes) -> TokenList:
    """`tokens` with its current entry replaced and a fresh ID."""
    entries = list(tokens.entries)
    entries[tokens.current] = entry
    return TokenList(list_id=list_id, current=tokens.current, entries=tuple(entries))


def without_current(tokens: TokenList, list_id: bytes, now: int) -> TokenList | None:
    """What remains after the current entry is verified, or None when nothing does."""
    rest = tuple(e for i, e in enumerate(tokens.entries) if i != tokens.current and is_live(e, now))
    if not rest:
        return None
    return TokenList(list_id=list_id, current=len(rest) - 1, entries=rest)


def lifetime(tokens: TokenList, now: int) -> int:
    """Seconds until the last entry expires: the cookie's Max-Age and its ID's TTL."""
    return max(1, max(e.expires_at for e in tokens.entries) - now)


def lifetime_with_new(kept: tuple[Entry, ...], now: int, policy: OtpPolicy) -> int:
    """`lifetime` of `kept` plus an entry issued at `now`, known before that entry's code is."""
    return max(1, max((e.expires_at for e in kept), default=0) - now, policy.ttl_seconds)


def public_state(tokens: TokenList, now: int, *, sent: bool) -> dict[str, object]:
    """The current entry as the API shows it: never the code, never another credential."""
    entry = tokens.current_entry
    return {
        "credential": entry.credential.address,
        "channel": entry.credential.channel,
        "sent": sent,
        "expires": iso(entry.expires_at),
        "resendBlock": iso(entry.resend_at) if entry.resends_left > 0 else None,
        "otpBlock": iso(entry.blocked_until) if now < entry.blocked_until else None,
        "attemptsLeft": entry.attempts_left,
        "resendsLeft": entry.resends_left,
        "pending": sum(1 for e in tokens.entries if is_live(e, now)),
    }
