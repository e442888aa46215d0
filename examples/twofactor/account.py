"""The signed-in user's pages: set up an authenticator app, backup codes, trusted devices.

Whenever the server answers with a blob (`enrolment`, `set`), it replaces the stored one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from examples.twofactor import pages
from examples.twofactor.storage import SIGNED_IN
from examples.twofactor.web import html, services, session_of, to, user_at


async def home(request: Request) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    message = None
    if "welcome" in request.query_params:
        message = "Welcome! Set up a second factor below."
    elif "enrolled" in request.query_params:
        message = "Your authenticator app is set up."
    return html(pages.account(user, session_of(request).csrf, message=message))


async def totp_enrol(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    found = services(request)
    started = await found.otp.totp_enrol(
        subject=user.id, account=user.email, issuer=found.config.totp_issuer
    )
    session = session_of(request)
    # Only the sealed `pending` token is kept; the secret is shown once and forgotten.
    session.data["pending"] = started.pending
    found.storage.save_session(session)
    return html(pages.totp_enrol(user, session.csrf, qr_svg=started.qr, secret=started.secret))


async def totp_confirm(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SIGNED_IN)
    session = session_of(request)
    if user is None or "pending" not in session.data:
        return to("/")
    found = services(request)
    done = await found.otp.totp_confirm(
        subject=user.id, pending=session.data["pending"], code=fields.get("code", "")
    )
    if not done.approved or done.enrolment is None:
        if done.status != "incorrect":  # expired or invalid: start again
            return to("/")
        return html(pages.totp_retry(user, session.csrf), 401)
    found.storage.set_totp_enrolment(user.id, done.enrolment)
    session.data.pop("pending")
    found.storage.save_session(session)
    return to("/?enrolled")


async def backup_codes(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    found = services(request)
    made = await found.otp.backup_codes_generate(subject=user.id)
    found.storage.set_backup_codes(user.id, made.set)
    return html(pages.backup_codes(user, session_of(request).csrf, made.codes))


async def devices_page(request: Request) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    listed = services(request).storage.devices(user.id)
    current = session_of(request).data.get("device_id")
    return html(pages.devices(user, session_of(request).csrf, listed, current))


async def revoke_device(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    found = services(request)
    device_id = fields.get("device_id", "")
    # Only a device this host trusted for this user: the server would revoke any id given.
    # Revoked on the server first, so a failed call leaves the device listed, not trusted
    # out of sight.
    if any(device.device_id == device_id for device in found.storage.devices(user.id)):
        await found.otp.device_revoke(subject=user.id, device_id=device_id)
        found.storage.remove_device(user.id, device_id)
    return to("/devices")


async def revoke_all_devices(request: Request, fields: dict[str, str]) -> Response:
    user = user_at(request, SIGNED_IN)
    if user is None:
        return to("/signin")
    found = services(request)
    # Both ways: the raised generation (first: it needs no network) holds even if the
    # server's store is ever flushed; the server's revoke-all marker covers tokens that
    # were trusted without a generation.
    found.storage.raise_device_generation(user.id)
    await found.otp.device_revoke(subject=user.id)
    return to("/devices")
