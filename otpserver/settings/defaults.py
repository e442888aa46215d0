"""Every default of the product and its deployment, written once.

`OtpPolicy` and `LimitPolicy` take their field defaults from here, `custom/otp.py` and
`custom/limits.py` start from those, the `EnvVar` declarations take their defaults (and the
"(default: N)" in their comments) from here, and `sample.env` and the README's
configuration table are generated from the declarations. Change a value here, run
`python -m otpserver.settings.sample --write`, and every one of them follows;
`tests/test_defaults.py` and `tests/test_docs_sync.py` fail while anything disagrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# --- Code policy (`OtpPolicy`; `OTP_LENGTH`, `OTP_TTL_SECONDS`, ... override) ---------------

CODE_LENGTH = 6
"""Characters per code: 10^6 decimal codes."""
CODE_ALPHABET = "0123456789"
"""Digits type fastest on phones."""
CODE_TTL_SECONDS = 300
"""How long a code works."""
MAX_TTL_SECONDS = 600
"""No code lives longer than ten minutes, whatever the configuration says."""
MAX_ATTEMPTS = 3
"""Wrong codes allowed per code."""
RESEND_COOLDOWN_SECONDS = 30
"""Wait between two sends for one pending credential."""
MAX_RESENDS = 3
"""Resends per pending credential."""
MAX_CREDENTIALS = 3
"""Pending credentials per browser cookie."""
FAILURE_BLOCK_SECONDS: tuple[int, ...] = (0, 5)
"""Verify block after the first, second, ... wrong code for one entry (the last repeats)."""

# --- Abuse limits (`LimitPolicy`; `OTP_LIMIT_*` and `OTP_SMS_*` override) -----------------

LIMIT_MAX_FAILURES = 10
LIMIT_FAILURE_WINDOW_SECONDS = 86400
LIMIT_LOCKOUT_SECONDS = 900
LIMIT_CREDENTIAL_SENDS = 5
LIMIT_CREDENTIAL_WINDOW_SECONDS = 600
LIMIT_ADDRESS_REQUESTS = 30
LIMIT_ADDRESS_VERIFIES = 60
LIMIT_ADDRESS_WINDOW_SECONDS = 600
ANY_CHANNEL = "*"
"""The `channel_sends_per_hour` entry that applies to every channel not named."""
LIMIT_CHANNEL_SENDS_PER_HOUR: Mapping[str, int] = MappingProxyType(
    {"email": 5000, "phone": 500, ANY_CHANNEL: 1000}
)
SMS_CHANNEL = "phone"
SMS_ALLOWLIST: tuple[str, ...] = ()
"""Empty: every country may receive SMS codes."""
SMS_DENYLIST: tuple[str, ...] = ()
SMS_PREFIX_DIGITS = 6
SMS_PREFIX_SENDS = 20
SMS_PREFIX_WINDOW_SECONDS = 3600
SMS_PREFIX_BREAKER_SECONDS = 3600

# --- Deployment (`Settings`) ---------------------------------------------------------------

ENVIRONMENT: Final = "production"
HOST = "127.0.0.1"
PORT = 8000
WORKERS = 1
WORKER_TIMEOUT_SECONDS = 30.0
STORE_URL = "memory://"
STORE_TIMEOUT_SECONDS = 1.0
KEK_ROTATION_SECONDS = 86400
MEMORY_MAX_IDS = 2_000_000
MEMORY_MAX_COUNTERS = 1_000_000
MAX_BODY_BYTES = 4096
PROXY_HEADER: Final = "x-forwarded-for"

# --- Delivery (`DeliveryConfig`) -----------------------------------------------------------

EMAIL_PROVIDER: Final = "console"
SMS_PROVIDER: Final = "console"
SMTP_PORT = 587
SMTP_SECURITY: Final = "starttls"
SMTP_TIMEOUT_SECONDS = 10
TWILIO_API_BASE = "https://api.twilio.com"
HTTP_TIMEOUT_SECONDS = 5
HTTP_RETRIES = 1
DEFAULT_LOCALE = "en"
