"""Signing in: a password, then a second factor through otpserver, then a session.

The sign-in sequence:

1. `POST /signin` checks the password against the Argon2id hash on the user row.
2. If the browser holds a device cookie, `OtpClient.device_check` asks the server whether
   it is still trusted for this user (and this `device_generation`). Trusted: signed in.
3. Otherwise the session moves to the "second-factor-due" stage and `/second-factor`
   offers what the user has: an authenticator-app code (`totp_verify`), an email code
   (`start` + `check` through `/v1/challenges`) or a backup code (`backup_code_redeem`).
4. An approval carries a signed `result`; `OtpClient.verify_result` checks it through the
   server's JWKS (EdDSA, issuer, audience = this API key, the session's nonce) and the
   claims must name this user. Only then does the browser get a signed-in session.
5. With "trust this device", `device_trust` returns a sealed token for the browser's
   HttpOnly cookie, and the host records the `deviceId` to list and revoke it later.

Whenever an answer carries a new blob (`enrolment`, `set`, `device`), the host stores it in
place of the old one: that is how blobs move to a new master key.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from examples.twofactor import pages
from examples.twofactor.storage import (
    ANONYMOUS,
    SECOND_FACTOR_DUE,
    SIGNED_IN,
    Storage,
    User,
)
from examples.twofactor.web import (
    html,
    replace_session,
    services,
    session_of,
    set_device_cookie,
    to,
    user_at,
)

log = logging.getLogger("twofactor")
passwords = PasswordHasher()
"""argon2-cffi's defaults: Argon2id with the parameters RFC 9106 recommends."""
UNKNOWN_USER_HASH = passwords.hash(secrets.token_urlsafe(16))
"""Checked against when the email is unknown, so both answers take as long."""

# Registration and password


async def register_page(request: Request) -> Response:
    return html(pages.register(session_of(request).csrf))


async def register(request: Request, fields: dict[str, str]) -> Response:
    email = fields.get("email", "").strip().lower()
    password = fields.get("password", "")
    csrf = session_of(request).csrf
    if "@" not in email or len(email) > 254 or not 8 <= len(password) <= 1024:
        message = "Give an email address and a password of at least 8 characters."
        return html(pages.register(csrf, email=email, message=message), 400)
    user = services(request).storage.add_user(email, passwords.hash(password))
    if user is None:
        message = "An account with that email exists. Sign in instead."
        return html(pages.register(csrf, email=email, message=message), 409)
    # A new account has no second factor yet: the password alone signs it in this once.
    replace_session(request, user.id, SIGNED_IN)
    return to("/?welcome")


async def sign_in_page(request: Request) -> Response:
    return html(pages.sign_in(session_of(request).csrf))


async def sign_in(request: Request, fields: dict[str, str]) -> Response:
    found = services(request)
    email = fields.get("email", "").strip().lower()
    user = found.storage.user_by_email(email)
    if not password_matches(found.storage, user, fields.get("password", "")) or user is None:
        message = "That email and password do not match."
        return html(pages.sign_in(session_of(request).csrf, email=email, message=message), 401)
    # The password is right. A trusted device waives the second factor, and only that.
    device = request.cookies.get(found.config.device_cookie)
    if device:
        checked = await found.otp.device_check(
            subject=user.id, device=device, generation=user.device_generation
        )
        if checked.trusted:
            session = replace_session(request, user.id, SIGNED_IN)
            session.data["device_id"] = checked.device_id
            found.storage.save_session(session)
            response = to("/")
            if checked.device and checked.expires:  # re-sealed under the current master key
                set_device_cookie(found.config, response, checked.device, checked.expires)
            return response
    session = replace_session(request, user.id, SECOND_FACTOR_DUE)
    session.data["nonce"] = secrets.token_urlsafe(16)
    found.storage.save_session(session)
    return to("/second-factor")


def password_matches(storage: Storage, user: User | None, password: str) -> bool:
    """Whether `password` is the user's, taking as long for an unknown user; a hash made
    with older parameters is replaced. (Argon2 holds the event loop for tens of
    milliseconds here: a busy application hashes in a worker thread.)"""
    try:
        passwords.verify(user.password_hash if user else UNKNOWN_USER_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    if user is None:
        return False
    if passwords.check_needs_rehash(user.password_hash):
        storage.set_password_hash(user.id, passwords.hash(password))
    return True


async def sign_out(request: Request, fields: dict[str, str]) -> Response:
    # The device cookie stays: signing out does not make this browser less trusted.
    replace_session(request, None, ANONYMOUS)
    return to("/signin")


# The second factor


async def second_factor_page(request: Request) -> Response:
    user = user_at(request, SECOND_FACTOR_DUE)
    if user is None:
        return to("/signin")
    sent = "challenge" in session_of(request).data
    return html(pages.second_factor(user, session_of(request).csrf, email_sent=sent))


async def email_send(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SECOND_FACTOR_DUE)
    if user is None:
        return to("/signin")
    session = session_of(request)
    started = await services(request).otp.start(email=user.email, nonce=session.data["nonce"])
    # Keep the newest challenge token, like a cookie jar: every answer replaces it.
    session.data["challenge"] = started.challenge
    services(request).storage.save_session(session)
    return to("/second-factor")


async def email_check(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SECOND_FACTOR_DUE)
    session = session_of(request)
    if user is None or "challenge" not in session.data:
        return to("/signin")
    checked = await services(request).otp.check(
        session.data["challenge"], fields.get("code", ""), nonce=session.data["nonce"]
    )
    if checked.challenge:
        session.data["challenge"] = checked.challenge
    elif not checked.approved:
        session.data.pop("challenge")  # spent, expired or blocked for good: send another
    services(request).storage.save_session(session)
    if not checked.approved or checked.result is None:
        return refused(request, user, checked.status, email_sent="challenge" in session.data)
    return await approved(request, user, checked.result, fields, method="email_code")


async def totp_check(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SECOND_FACTOR_DUE)
    if user is None or user.totp_enrolment is None:
        return to("/signin")
    found = services(request)
    checked = await found.otp.totp_verify(
        subject=user.id,
        enrolment=user.totp_enrolment,
        code=fields.get("code", ""),
        nonce=session_of(request).data["nonce"],
    )
    if checked.enrolment:
        found.storage.set_totp_enrolment(user.id, checked.enrolment)
    if not checked.approved or checked.result is None:
        return refused(request, user, checked.status)
    return await approved(request, user, checked.result, fields, method="totp")


async def backup_check(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SECOND_FACTOR_DUE)
    if user is None or user.backup_codes is None:
        return to("/signin")
    found = services(request)
    checked = await found.otp.backup_code_redeem(
        subject=user.id,
        set=user.backup_codes,
        code=fields.get("code", ""),
        nonce=session_of(request).data["nonce"],
    )
    if checked.set:
        found.storage.set_backup_codes(user.id, checked.set)
    if not checked.approved or checked.result is None:
        return refused(request, user, checked.status)
    return await approved(request, user, checked.result, fields, method="backup_code")


REFUSALS = {
    "incorrect": "That code is not right.",
    "locked": "Too many wrong codes. Wait a few minutes, or use another way.",
    "expired": "That code has expired. Ask for a new one.",
    "too_many_attempts": "Too many wrong codes. Ask for a new one.",
    "blocked": "Too many wrong codes. Wait a moment and try again.",
}


def refused(request: Request, user: User, status: str, *, email_sent: bool = False) -> Response:
    user = services(request).storage.user(user.id) or user  # a blob may have been replaced
    message = REFUSALS.get(status, "That code cannot be used. Try another way.")
    body = pages.second_factor(
        user, session_of(request).csrf, email_sent=email_sent, message=message
    )
    return html(body, 401)


async def approved(
    request: Request, user: User, result: str, fields: dict[str, str], *, method: str
) -> Response:
    """Sign in after checking the signed result, and trust the device when asked."""
    found = services(request)
    nonce = session_of(request).data["nonce"]
    try:
        # PyJWT fetches the JWKS with blocking I/O (rarely: it is cached), so off the loop.
        claims = await run_in_threadpool(found.otp.verify_result, result, nonce=nonce)
    except jwt.PyJWTError:
        log.warning("a result failed verification")
        return html(pages.problem("Not signed in", "The approval could not be verified."), 403)
    if not result_names(claims, user, method):
        return html(pages.problem("Not signed in", "The approval is for someone else."), 403)
    session = replace_session(request, user.id, SIGNED_IN)
    response = to("/")
    if fields.get("trust") == "1":
        trusted = await found.otp.device_trust(subject=user.id, generation=user.device_generation)
        if trusted.device and trusted.device_id and trusted.expires:
            label = request.headers.get("user-agent", "a browser")[:80]
            found.storage.add_device(user.id, trusted.device_id, label, trusted.expires)
            set_device_cookie(found.config, response, trusted.device, trusted.expires)
            session.data["device_id"] = trusted.device_id
            found.storage.save_session(session)
    return response


def result_names(claims: dict[str, Any], user: User, method: str) -> bool:
    """The result proves this method for this user: a TOTP or backup-code result names our
    subject; an email-code result (no subject given) names the verified address."""
    if claims.get("otp_method") != method:
        return False
    if method == "email_code":
        return claims.get("email") == user.email and claims.get("email_verified") is True
    return claims.get("sub") == user.id
