"""The example's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEVELOPMENT_ISSUER = "otpserver-development"
"""The `iss` of results from a server in development mode without `OTP_ISSUER`."""


@dataclass(frozen=True, slots=True)
class Config:
    """Where otpserver is, the API key, the database, and how cookies are set.

    `secure_cookies` is for https: it adds `Secure` and the `__Host-` prefix, which pins the
    cookies to this exact origin. Leave it off only for http://127.0.0.1 in development.
    """

    otp_url: str
    otp_api_key: str
    otp_issuer: str = DEVELOPMENT_ISSUER
    database: str = "twofactor.sqlite3"
    host: str = "127.0.0.1"
    port: int = 8001
    secure_cookies: bool = False
    totp_issuer: str = "Two-factor example"

    @property
    def session_cookie(self) -> str:
        return "__Host-session" if self.secure_cookies else "session"

    @property
    def device_cookie(self) -> str:
        return "__Host-device" if self.secure_cookies else "device"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """`OTPSERVER_URL` and `OTP_API_KEY` are required; the rest have defaults."""
        missing = [name for name in ("OTPSERVER_URL", "OTP_API_KEY") if not env.get(name)]
        if missing:
            raise SystemExit(f"set {' and '.join(missing)} (see 'Two-factor login' in the README)")
        return cls(
            otp_url=env["OTPSERVER_URL"],
            otp_api_key=env["OTP_API_KEY"],
            otp_issuer=env.get("OTP_ISSUER", DEVELOPMENT_ISSUER),
            database=env.get("TWOFACTOR_DATABASE", "twofactor.sqlite3"),
            host=env.get("TWOFACTOR_HOST", "127.0.0.1"),
            port=int(env.get("TWOFACTOR_PORT", "8001")),
            secure_cookies=env.get("TWOFACTOR_SECURE_COOKIES", "false") == "true",
        )
