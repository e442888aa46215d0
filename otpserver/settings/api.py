"""Settings of the server-to-server API, signed results and master-key rotation (SPEC §10-§12).

`OTP_API_KEYS` holds only digests: a leaked configuration file gives no one a working key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from otpserver.errors import ConfigError
from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting

SCOPES: frozenset[str] = frozenset({"challenges", "totp", "backup_codes", "devices", "forward_ip"})
"""What an API key may be allowed to do; `forward_ip` lets it name the end user's address."""
KEY_ID = re.compile(r"[a-z0-9]{4,32}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_RESULT_TTL_SECONDS = 300
MASTER_KEY_BYTES = 32

# Each default is written once, here: the dataclass and the documented variables use these.
KEY_REQUESTS = 600
KEY_WINDOW_SECONDS = 60
RESULT_AUDIENCE = "otp-browser"
"""A `-` no API key id can contain, so a browser result never names a key as its audience."""
RESULT_TTL_SECONDS = 120
SIGNING_PERIOD_SECONDS = 7 * 86400

API_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_MASTER_KEY_PREVIOUS",
        "",
        "comma list of earlier master keys, kept after a rotation so old blobs and keys still open",
    ),
    EnvVar(
        "OTP_API_KEYS",
        "",
        "comma list of id:sha256-hex:scope+scope, one per /v1 key (python -m otpserver apikey new)",
    ),
    EnvVar(
        "OTP_API_KEY_REQUESTS", str(KEY_REQUESTS), "requests one API key may make per window on /v1"
    ),
    EnvVar("OTP_API_KEY_WINDOW_SECONDS", str(KEY_WINDOW_SECONDS), "window of that per-key limit"),
    EnvVar(
        "OTP_ISSUER",
        "",
        "iss of signed results, e.g. https://otp.example.com; required in production",
    ),
    EnvVar(
        "OTP_RESULT_AUDIENCE",
        RESULT_AUDIENCE,
        "aud of the results the browser flow gets (API results name the key id instead)",
    ),
    EnvVar(
        "OTP_RESULT_TTL_SECONDS",
        str(RESULT_TTL_SECONDS),
        f"lifetime of a signed result, at most {MAX_RESULT_TTL_SECONDS}",
    ),
    EnvVar(
        "OTP_SIGNING_SEED",
        "",
        "base64url of 32 bytes to derive result-signing keys from (default: OTP_MASTER_KEY)",
    ),
    EnvVar(
        "OTP_SIGNING_PERIOD_SECONDS",
        str(SIGNING_PERIOD_SECONDS),
        "how long one result-signing key signs before the next one takes over",
    ),
)


@dataclass(frozen=True, slots=True)
class ApiKeyEntry:
    """One configured API key: its id, the SHA-256 of the whole key, and its scopes."""

    id: str
    digest: bytes
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The `/v1` keys, the result signer's parameters and the retired master keys."""

    previous_master_keys: tuple[bytes, ...] = ()
    keys: tuple[ApiKeyEntry, ...] = ()
    key_requests: int = KEY_REQUESTS
    key_window_seconds: int = KEY_WINDOW_SECONDS
    issuer: str | None = None
    result_audience: str = RESULT_AUDIENCE
    result_ttl_seconds: int = RESULT_TTL_SECONDS
    signing_seed: bytes | None = None
    signing_period_seconds: int = SIGNING_PERIOD_SECONDS

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> ApiSettings:
        """Read and check the variables of `API_ENV_VARS`, reporting every problem found."""
        with collecting(problems) as found:
            reader = EnvReader(env, API_ENV_VARS, found)
            none: tuple[ApiKeyEntry, ...] = ()
            keys = found.read(lambda: parse_api_keys(reader.raw("OTP_API_KEYS")), none)
            audience = reader.required("OTP_RESULT_AUDIENCE")
            if any(entry.id == audience for entry in keys):
                # Results for an API key name its id as audience; a browser result must
                # never be mistaken for one.
                reader.problem(
                    "OTP_RESULT_AUDIENCE", "OTP_RESULT_AUDIENCE must differ from every API key id"
                )
            issuer = reader.optional("OTP_ISSUER")
            if issuer is not None and (len(issuer) > 255 or not issuer.isprintable()):
                reader.problem("OTP_ISSUER", "OTP_ISSUER must be at most 255 printable characters")
                issuer = None
            seed = reader.raw("OTP_SIGNING_SEED")
            previous = reader.raw("OTP_MASTER_KEY_PREVIOUS").split(",")
            return cls(
                previous_master_keys=found.read(
                    lambda: tuple(
                        parse_key("OTP_MASTER_KEY_PREVIOUS", part)
                        for part in previous
                        if part.strip()
                    ),
                    (),
                ),
                keys=keys,
                key_requests=reader.integer("OTP_API_KEY_REQUESTS", 1, 10**9),
                key_window_seconds=reader.integer("OTP_API_KEY_WINDOW_SECONDS", 1, 86400),
                issuer=issuer,
                result_audience=audience,
                result_ttl_seconds=reader.integer(
                    "OTP_RESULT_TTL_SECONDS", 1, MAX_RESULT_TTL_SECONDS
                ),
                signing_seed=found.read(lambda: parse_key("OTP_SIGNING_SEED", seed), None)
                if seed
                else None,
                signing_period_seconds=reader.integer(
                    "OTP_SIGNING_PERIOD_SECONDS", 3600, 366 * 86400
                ),
            )


def parse_key(name: str, text: str) -> bytes:
    """32 bytes from base64url text (padding optional), or a `ConfigError` naming `name`."""
    value = text.strip()
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} must be base64url of 32 bytes") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"{name} must be base64url of 32 bytes")
    return key


def parse_api_keys(value: str) -> tuple[ApiKeyEntry, ...]:
    """`id:sha256hex:scope+scope,...`; at most two entries per id (old and new in a rotation)."""
    entries: list[ApiKeyEntry] = []
    for raw in value.split(","):
        if not raw.strip():
            continue
        parts = raw.strip().split(":")
        if len(parts) != 3:
            raise ConfigError("OTP_API_KEYS must be a comma list of id:sha256-hex:scope+scope")
        key_id, digest, scopes = parts
        if not KEY_ID.fullmatch(key_id):
            raise ConfigError("OTP_API_KEYS ids must be 4-32 characters of a-z and 0-9")
        if not _DIGEST.fullmatch(digest.lower()):
            raise ConfigError(f"OTP_API_KEYS digest of {key_id} must be 64 hex characters")
        names = frozenset(s for s in scopes.split("+") if s)
        if not names or not names <= SCOPES:
            raise ConfigError(
                f"OTP_API_KEYS scopes of {key_id} must be from: {', '.join(sorted(SCOPES))}"
            )
        entries.append(ApiKeyEntry(key_id, bytes.fromhex(digest), names))
    for entry in entries:
        if sum(other.id == entry.id for other in entries) > 2:
            raise ConfigError(
                f"OTP_API_KEYS lists {entry.id} more than twice (two keys per id during a rotation)"
            )
    if len({entry.digest for entry in entries}) != len(entries):
        raise ConfigError("OTP_API_KEYS lists the same key twice")
    return tuple(entries)
