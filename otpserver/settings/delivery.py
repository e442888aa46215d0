"""Delivery settings read once from the environment: which providers, their endpoints and keys.

`DeliveryConfig.from_env` checks every `OTP_*` delivery variable that is set, whichever
provider is chosen, so a typo fails start-up instead of the first send; values a provider
needs are required only when that provider is chosen. Every problem is reported at once:
one `ConfigError` with one line per problem, each naming its variable.
`DELIVERY_ENV_VARS` lists the variables with their comments and their defaults, whose
values come from `otpserver.settings.defaults`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from otpserver.errors import ConfigError
from otpserver.settings import defaults
from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting

EmailProvider = Literal["console", "smtp", "none"]
SmsProvider = Literal["console", "twilio", "webhook", "none"]
SmtpSecurity = Literal["starttls", "tls", "none"]
_EMAIL_PROVIDERS: tuple[EmailProvider, ...] = ("console", "smtp", "none")
_SMS_PROVIDERS: tuple[SmsProvider, ...] = ("console", "twilio", "webhook", "none")
_SMTP_SECURITIES: tuple[SmtpSecurity, ...] = ("starttls", "tls", "none")
_Choice = TypeVar("_Choice", bound=str)


DELIVERY_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_EMAIL_PROVIDER",
        defaults.EMAIL_PROVIDER,
        "console (development only: prints codes to stderr), smtp, or none (no email codes)",
    ),
    EnvVar("OTP_SMTP_HOST", "", "SMTP server host name; required with OTP_EMAIL_PROVIDER=smtp"),
    EnvVar(
        "OTP_SMTP_PORT",
        str(defaults.SMTP_PORT),
        "SMTP server port: usually 587 with starttls, 465 with tls",
    ),
    EnvVar("OTP_SMTP_USERNAME", "", "SMTP login; empty for a relay without authentication"),
    EnvVar("OTP_SMTP_PASSWORD", "", "SMTP password; required with OTP_SMTP_USERNAME"),
    EnvVar(
        "OTP_SMTP_SECURITY",
        defaults.SMTP_SECURITY,
        "starttls (required, never downgraded), tls (implicit TLS) or none (no login allowed)",
    ),
    EnvVar(
        "OTP_SMTP_TIMEOUT_SECONDS",
        str(defaults.SMTP_TIMEOUT_SECONDS),
        "deadline for the whole SMTP exchange of one email",
    ),
    EnvVar(
        "OTP_EMAIL_FROM",
        "",
        "sender of the emails, optionally with a name: Example <no-reply@example.com>",
    ),
    EnvVar(
        "OTP_SMS_PROVIDER",
        defaults.SMS_PROVIDER,
        "console (development only), twilio, webhook, or none (no SMS codes)",
    ),
    EnvVar("OTP_TWILIO_ACCOUNT_SID", "", "Twilio account SID (AC...); required with twilio"),
    EnvVar("OTP_TWILIO_AUTH_TOKEN", "", "Twilio auth token; required with twilio"),
    EnvVar(
        "OTP_TWILIO_FROM",
        "",
        "Twilio sender: an E.164 number (+14155550100) or a messaging service SID (MG...)",
    ),
    EnvVar(
        "OTP_TWILIO_API_BASE",
        defaults.TWILIO_API_BASE,
        "Twilio API base URL; change it only to point tests at a local server",
    ),
    EnvVar(
        "OTP_SMS_WEBHOOK_URL",
        "",
        "https URL that receives one signed JSON request per SMS; required with webhook",
    ),
    EnvVar(
        "OTP_SMS_WEBHOOK_SECRET",
        "",
        "key (32+ characters) of the HMAC-SHA256 signature on each webhook request",
    ),
    EnvVar(
        "OTP_HTTP_TIMEOUT_SECONDS",
        str(defaults.HTTP_TIMEOUT_SECONDS),
        "timeout of each HTTP request to an SMS provider",
    ),
    EnvVar(
        "OTP_HTTP_RETRIES",
        str(defaults.HTTP_RETRIES),
        "extra attempts (0-5) after a network error; an HTTP error answer is never retried",
    ),
    EnvVar(
        "OTP_DEFAULT_LOCALE",
        defaults.DEFAULT_LOCALE,
        "template language when neither the request nor Accept-Language picks one",
    ),
    EnvVar(
        "OTP_AUTOFILL_DOMAIN",
        "",
        "host name in the SMS autofill line (@host #code); defaults to the request's host",
    ),
)


LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")
"""BCP 47 in the shape templates need: a primary language subtag, then any subtags."""

HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
"""A lower-case DNS name (or dotted IPv4), as the `@host #code` autofill line requires."""

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TWILIO_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_TWILIO_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_NAMED_ADDRESS = re.compile(r"(?P<name>[^<>]*?)\s*<(?P<address>[^<>]+)>")
_MIN_WEBHOOK_SECRET_CHARS = 32


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how `SmtpSender` hands emails over; `from_name` may be empty."""

    host: str
    from_address: str
    from_name: str = ""
    port: int = defaults.SMTP_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: SmtpSecurity = defaults.SMTP_SECURITY
    timeout_seconds: float = defaults.SMTP_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """Twilio's Messages API; `sender` is an E.164 number or a messaging service SID."""

    account_sid: str
    auth_token: str = field(repr=False)
    sender: str
    api_base: str = defaults.TWILIO_API_BASE


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """A customer gateway that receives one HMAC-signed JSON request per SMS."""

    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Every delivery setting; the sub-configuration of an unchosen provider is None.

    The defaults are the development setup: both channels print to the console.
    """

    email_provider: EmailProvider = defaults.EMAIL_PROVIDER
    sms_provider: SmsProvider = defaults.SMS_PROVIDER
    smtp: SmtpConfig | None = None
    twilio: TwilioConfig | None = None
    webhook: WebhookConfig | None = None
    http_timeout_seconds: float = defaults.HTTP_TIMEOUT_SECONDS
    http_retries: int = defaults.HTTP_RETRIES
    default_locale: str = defaults.DEFAULT_LOCALE
    autofill_domain: str | None = None

    def __post_init__(self) -> None:
        # The router picks providers by which settings are present, however this was built.
        for choice, chosen, field_name in (
            ("OTP_EMAIL_PROVIDER=smtp", self.email_provider == "smtp", "smtp"),
            ("OTP_SMS_PROVIDER=twilio", self.sms_provider == "twilio", "twilio"),
            ("OTP_SMS_PROVIDER=webhook", self.sms_provider == "webhook", "webhook"),
        ):
            if chosen != (getattr(self, field_name) is not None):
                raise ConfigError(f"{choice} and DeliveryConfig.{field_name} must be set together")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> DeliveryConfig:
        """Read and check every delivery variable; without `problems`, raise one `ConfigError`
        listing every bad one, else record them there."""
        with collecting(problems) as found:
            env = EnvReader(environ, DELIVERY_ENV_VARS, found)
            email_provider = env.choice("OTP_EMAIL_PROVIDER", _EMAIL_PROVIDERS)
            sms_provider = env.choice("OTP_SMS_PROVIDER", _SMS_PROVIDERS)
            smtp = _smtp(env, required=email_provider == "smtp")
            twilio = _twilio(env, required=sms_provider == "twilio")
            webhook = _webhook(env, required=sms_provider == "webhook")
            autofill_domain = env.optional("OTP_AUTOFILL_DOMAIN")
            if autofill_domain is not None:
                autofill_domain = autofill_domain.lower()
                if not HOST_NAME.fullmatch(autofill_domain):
                    env.problem(
                        "OTP_AUTOFILL_DOMAIN",
                        "OTP_AUTOFILL_DOMAIN must be a host name without scheme or port",
                    )
            default_locale = env.required("OTP_DEFAULT_LOCALE")
            if not LANGUAGE_TAG.fullmatch(default_locale):
                env.problem(
                    "OTP_DEFAULT_LOCALE",
                    "OTP_DEFAULT_LOCALE must be a language tag such as en or fr-CA",
                )
            return cls(
                # A provider whose settings are broken counts as unchosen, so the one
                # `ConfigError` lists the broken settings rather than this pairing.
                email_provider=email_provider if smtp or email_provider != "smtp" else "none",
                sms_provider=sms_provider
                if (twilio or sms_provider != "twilio") and (webhook or sms_provider != "webhook")
                else "none",
                smtp=smtp,
                twilio=twilio,
                webhook=webhook,
                http_timeout_seconds=env.seconds("OTP_HTTP_TIMEOUT_SECONDS", maximum=60),
                http_retries=env.integer("OTP_HTTP_RETRIES", 0, 5),
                default_locale=default_locale,
                autofill_domain=autofill_domain,
            )


def _smtp(env: EnvReader, *, required: bool) -> SmtpConfig | None:
    """The SMTP settings; all set values are checked even when smtp is not chosen."""
    host = env.optional("OTP_SMTP_HOST")
    port = env.integer("OTP_SMTP_PORT", 1, 65535)
    security = env.choice("OTP_SMTP_SECURITY", _SMTP_SECURITIES)
    timeout_seconds = env.seconds("OTP_SMTP_TIMEOUT_SECONDS", maximum=120)
    username = env.optional("OTP_SMTP_USERNAME")
    password = env.optional("OTP_SMTP_PASSWORD")
    sender = env.optional("OTP_EMAIL_FROM")
    from_name, from_address = ("", "") if sender is None else _parse_sender(env, sender)
    if host is not None and not _is_host(host):
        env.problem("OTP_SMTP_HOST", "OTP_SMTP_HOST must be a host name or an IP address")
    for name, value in (("OTP_SMTP_USERNAME", username), ("OTP_SMTP_PASSWORD", password)):
        if value is not None and not value.isprintable():
            env.problem(name, f"{name} must not contain control characters")
    login = ("OTP_SMTP_USERNAME", "OTP_SMTP_PASSWORD")
    if (username is None) != (password is None) and not env.has_problem(*login):
        env.problem(
            "OTP_SMTP_PASSWORD", "OTP_SMTP_PASSWORD and OTP_SMTP_USERNAME must be set together"
        )
    if (
        username is not None
        and security == "none"
        and not env.has_problem(*login, "OTP_SMTP_SECURITY")
    ):
        # A password sent over a plain connection is readable by anyone on the path.
        env.problem(
            "OTP_SMTP_SECURITY",
            "OTP_SMTP_SECURITY must be starttls or tls when OTP_SMTP_USERNAME is set",
        )
    if not required:
        return None
    when = "OTP_EMAIL_PROVIDER=smtp"
    host = _require(env, "OTP_SMTP_HOST", host, when)
    from_address = _require(env, "OTP_EMAIL_FROM", from_address, when)
    if env.has_problem("OTP_SMTP_HOST", "OTP_EMAIL_FROM", "OTP_SMTP_USERNAME", "OTP_SMTP_PASSWORD"):
        return None
    return SmtpConfig(
        host=host,
        from_address=from_address,
        from_name=from_name,
        port=port,
        username=username,
        password=password,
        security=security,
        timeout_seconds=timeout_seconds,
    )


def _parse_sender(env: EnvReader, value: str) -> tuple[str, str]:
    """Split `Name <address>` or a bare address into a display name and a checked address."""
    named = _NAMED_ADDRESS.fullmatch(value)
    name, address = (named["name"], named["address"]) if named else ("", value)
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if not name.isprintable() or '"' in name or "\\" in name:
        env.problem(
            "OTP_EMAIL_FROM",
            "OTP_EMAIL_FROM has a display name with quotes or control characters",
        )
        return "", ""
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError:
        env.problem(
            "OTP_EMAIL_FROM", "OTP_EMAIL_FROM must be an email address, optionally Name <address>"
        )
        return "", ""
    return name, checked.normalized


def _twilio(env: EnvReader, *, required: bool) -> TwilioConfig | None:
    """The Twilio settings; all set values are checked even when twilio is not chosen."""
    account_sid = env.optional("OTP_TWILIO_ACCOUNT_SID")
    auth_token = env.optional("OTP_TWILIO_AUTH_TOKEN")
    sender = env.optional("OTP_TWILIO_FROM")
    api_base = _check_url(
        env, "OTP_TWILIO_API_BASE", env.required("OTP_TWILIO_API_BASE"), query=False
    )
    if account_sid is not None and not _TWILIO_ACCOUNT_SID.fullmatch(account_sid):
        env.problem(
            "OTP_TWILIO_ACCOUNT_SID", "OTP_TWILIO_ACCOUNT_SID must be AC followed by 32 hex digits"
        )
    if auth_token is not None and not auth_token.isprintable():
        env.problem(
            "OTP_TWILIO_AUTH_TOKEN", "OTP_TWILIO_AUTH_TOKEN must not contain control characters"
        )
    if sender is not None and not (
        _E164.fullmatch(sender) or _TWILIO_SERVICE_SID.fullmatch(sender)
    ):
        env.problem(
            "OTP_TWILIO_FROM",
            "OTP_TWILIO_FROM must be an E.164 number or an MG messaging service SID",
        )
    if not required:
        return None
    when = "OTP_SMS_PROVIDER=twilio"
    names = ("OTP_TWILIO_ACCOUNT_SID", "OTP_TWILIO_AUTH_TOKEN", "OTP_TWILIO_FROM")
    values = [
        _require(env, name, value, when)
        for name, value in zip(names, (account_sid, auth_token, sender), strict=True)
    ]
    if env.has_problem(*names, "OTP_TWILIO_API_BASE"):
        return None
    return TwilioConfig(
        account_sid=values[0],
        auth_token=values[1],
        sender=values[2],
        api_base=api_base.rstrip("/"),
    )


def _webhook(env: EnvReader, *, required: bool) -> WebhookConfig | None:
    """The SMS webhook settings; all set values are checked even when webhook is not chosen."""
    url = env.optional("OTP_SMS_WEBHOOK_URL")
    if url is not None:
        _check_url(env, "OTP_SMS_WEBHOOK_URL", url, query=True)
    secret = env.optional("OTP_SMS_WEBHOOK_SECRET")
    if secret is not None and len(secret) < _MIN_WEBHOOK_SECRET_CHARS:
        env.problem(
            "OTP_SMS_WEBHOOK_SECRET",
            f"OTP_SMS_WEBHOOK_SECRET must be at least {_MIN_WEBHOOK_SECRET_CHARS} characters",
        )
    if not required:
        return None
    when = "OTP_SMS_PROVIDER=webhook"
    url = _require(env, "OTP_SMS_WEBHOOK_URL", url, when)
    secret = _require(env, "OTP_SMS_WEBHOOK_SECRET", secret, when)
    if env.has_problem("OTP_SMS_WEBHOOK_URL", "OTP_SMS_WEBHOOK_SECRET"):
        return None
    return WebhookConfig(url=url, secret=secret)


def _require(env: EnvReader, name: str, value: str | None, when: str) -> str:
    """`value`, or a problem saying the chosen provider needs `name` (unless `name` has one)."""
    if not value:
        if not env.has_problem(name):
            env.problem(name, f"{name} is required when {when}")
        return ""
    return value


def _check_url(env: EnvReader, name: str, value: str, *, query: bool) -> str:
    """`value` if it is an https URL (http only to loopback) without credentials or fragment;
    else the first thing wrong with it is reported."""
    try:
        parts = urlsplit(value)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        env.problem(name, f"{name} is not a valid URL")
        return value
    # Codes and provider keys travel in these requests: plain http only on this machine.
    secure = parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))
    if not secure or not _is_host(host) or port == 0:
        env.problem(name, f"{name} must be an https URL (http only for localhost)")
    elif parts.username is not None or parts.fragment or (parts.query and not query):
        env.problem(name, f"{name} must not contain credentials, a fragment or a query")
    elif not value.isprintable() or " " in value:
        env.problem(name, f"{name} must not contain spaces or control characters")
    return value


def _is_host(value: str) -> bool:
    """True for a DNS name or an IP address literal."""
    if HOST_NAME.fullmatch(value.lower()):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    """True for names and addresses that never leave the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
