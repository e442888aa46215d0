"""Sign-in link settings (SPEC §18): links beside emailed codes, and approval from another device.

`LINK_ENV_VARS` lists the variables with their defaults and comments; `LinkSettings` reads
them once, and every refusal is a `ConfigError` whose one line names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting

_BASE_URL = re.compile(r"https?://[a-z0-9.-]{1,253}(:[0-9]{1,5})?", re.IGNORECASE)

LINK_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_LINKS",
        "false",
        "true: emailed codes also carry a sign-in link /l/<token> (SMS stays a code)",
    ),
    EnvVar(
        "OTP_LINK_CROSS_DEVICE",
        "false",
        "true: a link opened on another device approves the first tab by its two-digit number",
    ),
    EnvVar(
        "OTP_LINK_BASE_URL",
        "",
        "scheme and host links point at, e.g. https://otp.example.com; required with "
        "OTP_LINKS in production (development: the host the request used)",
    ),
)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Whether emails carry links, whether another device may approve, and where links point."""

    enabled: bool = False
    cross_device: bool = False
    base_url: str | None = None
    """`https://host[:port]` without a trailing slash; None: the request's own host."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> LinkSettings:
        """Read and check the link variables, reporting every bad one at once."""
        with collecting(problems) as found:
            reader = EnvReader(environ, LINK_ENV_VARS, found)
            enabled = reader.choice("OTP_LINKS", ("true", "false")) == "true"
            cross_device = reader.choice("OTP_LINK_CROSS_DEVICE", ("true", "false")) == "true"
            base_url = reader.optional("OTP_LINK_BASE_URL")
            if base_url is not None:
                base_url = base_url.rstrip("/")
                if not _BASE_URL.fullmatch(base_url):
                    reader.problem(
                        "OTP_LINK_BASE_URL",
                        "OTP_LINK_BASE_URL must be a scheme and host, e.g. https://otp.example.com",
                    )
                    base_url = None
            if cross_device and not enabled:
                reader.problem(
                    "OTP_LINK_CROSS_DEVICE", "OTP_LINK_CROSS_DEVICE=true needs OTP_LINKS=true"
                )
            return cls(enabled=enabled, cross_device=cross_device, base_url=base_url)
