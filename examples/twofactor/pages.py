"""The example's HTML pages: plain forms, no script, every value escaped.

Every form that changes something posts the session's CSRF token in a hidden field.
"""

from __future__ import annotations

import base64
from html import escape

from examples.twofactor.storage import Device, User

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 34rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f24; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
form { margin: 0.75rem 0; } label { display: block; margin: 0.5rem 0 0.2rem; }
input[type=email], input[type=password], input[type=text] { width: 100%; padding: 0.45rem;
       font: inherit; box-sizing: border-box; }
label.check { display: flex; gap: 0.4rem; align-items: center; }
button { font: inherit; padding: 0.4rem 1rem; margin-top: 0.5rem; cursor: pointer; }
.error { color: #a40e26; } .note { color: #57606a; }
.codes { font: 1.05rem ui-monospace, monospace; columns: 2; }
section { border-top: 1px solid #d0d7de; padding-top: 0.25rem; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 0.3rem; }
nav { display: flex; gap: 1rem; align-items: center; }
"""


def layout(title: str, body: str, *, user: User | None = None, csrf: str = "") -> str:
    """A whole page; with `user`, a navigation bar with the sign-out button."""
    nav = ""
    if user is not None:
        nav = (
            f'<nav><a href="/">Account</a><a href="/devices">Trusted devices</a>'
            f'<form method="post" action="/signout">{hidden(csrf)}'
            f"<button>Sign out</button></form></nav>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Two-factor example</title><style>{STYLE}</style></head>"
        f"<body>{nav}<h1>{escape(title)}</h1>{body}</body></html>"
    )


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">'


def error(message: str | None) -> str:
    return "" if not message else f'<p class="error" role="alert">{escape(message)}</p>'


def password_form(action: str, button: str, csrf: str, email: str = "") -> str:
    new = "new-password" if action == "/register" else "current-password"
    return (
        f'<form method="post" action="{action}">{hidden(csrf)}'
        f'<label for="email">Email</label><input id="email" name="email" type="email" '
        f'value="{escape(email)}" autocomplete="username" required>'
        f'<label for="password">Password</label><input id="password" name="password" '
        f'type="password" autocomplete="{new}" minlength="8" required>'
        f"<button>{escape(button)}</button></form>"
    )


def sign_in(csrf: str, *, email: str = "", message: str | None = None) -> str:
    body = (
        error(message)
        + password_form("/signin", "Sign in", csrf, email)
        + '<p class="note">New here? <a href="/register">Create an account</a>.</p>'
    )
    return layout("Sign in", body)


def register(csrf: str, *, email: str = "", message: str | None = None) -> str:
    body = (
        error(message)
        + password_form("/register", "Create account", csrf, email)
        + '<p class="note">Already registered? <a href="/signin">Sign in</a>.</p>'
    )
    return layout("Create an account", body)


def code_form(action: str, label: str, csrf: str, *, numeric: bool) -> str:
    """A form for one code, with the "trust this device" box."""
    mode = 'inputmode="numeric" autocomplete="one-time-code"' if numeric else 'autocomplete="off"'
    field = action.rsplit("/", 1)[-1] + "-code"
    return (
        f'<form method="post" action="{action}">{hidden(csrf)}'
        f'<label for="{field}">{escape(label)}</label>'
        f'<input id="{field}" name="code" type="text" {mode} required>'
        f'<label class="check"><input type="checkbox" name="trust" value="1">'
        f"Trust this device for 30 days</label>"
        f"<button>Verify</button></form>"
    )


def second_factor(user: User, csrf: str, *, email_sent: bool, message: str | None = None) -> str:
    """The choice of second factors the user has: authenticator app, email code, backup code."""
    parts = [error(message)]
    if user.totp_enrolment:
        parts.append(
            "<section><h2>Authenticator app</h2>"
            + code_form("/second-factor/totp", "Code from your app", csrf, numeric=True)
            + "</section>"
        )
    parts.append("<section><h2>Email code</h2>")
    if email_sent:
        parts.append(f'<p class="note">We sent a code to {escape(user.email)}.</p>')
        parts.append(code_form("/second-factor/email", "Code from the email", csrf, numeric=True))
    else:
        parts.append(
            f'<form method="post" action="/second-factor/email/send">{hidden(csrf)}'
            f"<button>Email me a code</button></form>"
        )
    parts.append("</section>")
    if user.backup_codes:
        parts.append(
            "<section><h2>Backup code</h2>"
            + code_form("/second-factor/backup", "One of your backup codes", csrf, numeric=False)
            + "</section>"
        )
    return layout("Second step", "".join(parts))


def account(user: User, csrf: str, *, message: str | None = None) -> str:
    totp = (
        "<p>An authenticator app is set up.</p>"
        if user.totp_enrolment
        else "<p>No authenticator app yet.</p>"
    )
    backup = (
        "<p>You have a set of backup codes.</p>"
        if user.backup_codes
        else "<p>No backup codes yet.</p>"
    )
    body = (
        (f'<p class="note" role="status">{escape(message)}</p>' if message else "")
        + f"<p>Signed in as <strong>{escape(user.email)}</strong>.</p>"
        + "<section><h2>Authenticator app</h2>"
        + totp
        + f'<form method="post" action="/totp/enrol">{hidden(csrf)}'
        + f"<button>{'Replace your' if user.totp_enrolment else 'Set up an'} authenticator app"
        + "</button></form></section>"
        + "<section><h2>Backup codes</h2>"
        + backup
        + f'<form method="post" action="/backup-codes">{hidden(csrf)}'
        + "<button>Generate new backup codes</button></form></section>"
    )
    return layout("Your account", body, user=user, csrf=csrf)


def totp_enrol(user: User, csrf: str, *, qr_svg: str, secret: str) -> str:
    """The QR code (the server's SVG, shown as an image so it can run nothing) and the
    secret for typing by hand, then the confirmation form."""
    image = base64.b64encode(qr_svg.encode()).decode()
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    body = (
        "<p>Scan this code with your authenticator app, then type the code it shows.</p>"
        f'<img src="data:image/svg+xml;base64,{image}" width="200" height="200" '
        'alt="QR code for your authenticator app">'
        f'<p class="note">Or type this key: <code id="totp-secret">{escape(grouped)}</code></p>'
        + confirm_form(csrf)
    )
    return layout("Set up an authenticator app", body, user=user, csrf=csrf)


def confirm_form(csrf: str, message: str | None = None) -> str:
    return (
        error(message) + f'<form method="post" action="/totp/confirm">{hidden(csrf)}'
        '<label for="confirm-code">Code from your app</label>'
        '<input id="confirm-code" name="code" type="text" inputmode="numeric" '
        'autocomplete="one-time-code" required><button>Confirm</button></form>'
    )


def totp_retry(user: User, csrf: str) -> str:
    return layout(
        "Set up an authenticator app",
        confirm_form(csrf, "That code is not right. Type the code your app shows now."),
        user=user,
        csrf=csrf,
    )


def backup_codes(user: User, csrf: str, codes: list[str]) -> str:
    """The new codes, shown once: they are stored nowhere."""
    items = "".join(f"<li>{escape(code)}</li>" for code in codes)
    body = (
        "<p>Keep these codes somewhere safe. Each works once, and this is the only time "
        "they are shown. Your older codes no longer work.</p>"
        f'<ol class="codes" id="backup-codes">{items}</ol><p><a href="/">Done</a></p>'
    )
    return layout("Your backup codes", body, user=user, csrf=csrf)


def devices(user: User, csrf: str, listed: list[Device], current: str | None) -> str:
    """The devices this host trusted for the user, each with a revoke button."""
    if not listed:
        rows = '<p id="no-devices">No trusted devices.</p>'
    else:
        lines = []
        for device in listed:
            this = " (this device)" if device.device_id == current else ""
            lines.append(
                f"<tr><td>{escape(device.label)}{this}</td>"
                f"<td>until {escape(device.expires[:10])}</td><td>"
                f'<form method="post" action="/devices/revoke">{hidden(csrf)}'
                f'<input type="hidden" name="device_id" value="{escape(device.device_id)}">'
                f"<button>Revoke</button></form></td></tr>"
            )
        rows = (
            "<table><tr><th>Device</th><th>Trusted</th><th></th></tr>" + "".join(lines) + "</table>"
        )
    body = (
        "<p>These browsers skip the second step when you sign in with your password.</p>"
        + rows
        + f'<form method="post" action="/devices/revoke-all">{hidden(csrf)}'
        "<button>Revoke every device</button></form>"
    )
    return layout("Trusted devices", body, user=user, csrf=csrf)


def problem(title: str, message: str) -> str:
    return layout(title, f'<p class="error">{escape(message)}</p><p><a href="/">Back</a></p>')
