"""Every default is written once, in `otpserver/settings/defaults.py`, and everything follows it.

The policies, the settings dataclasses, the `EnvVar` declarations (their defaults and the
"(default: N)" in their comments), `sample.env`, the README's configuration table and
`openapi.json` all derive from it; the last test edits a copy of the module and shows that
each dependant follows (or that the docs-sync checks fail until they are regenerated).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from otpserver.limits.rules import LimitPolicy
from otpserver.otp.policy import OtpPolicy
from otpserver.settings import defaults, hardening, sample
from otpserver.settings.delivery import DELIVERY_ENV_VARS, DeliveryConfig
from otpserver.settings.environment import ENV_VARS, Settings
from otpserver.settings.hardening import ALL_LIMIT_ENV_FIELDS
from otpserver.settings.overrides import LIMIT_ENV_FIELDS, POLICY_ENV_FIELDS
from otpserver.settings.reader import default_text

ROOT = Path(__file__).parent.parent

POLICY_DEFAULTS = {
    "length": defaults.CODE_LENGTH,
    "alphabet": defaults.CODE_ALPHABET,
    "ttl_seconds": defaults.CODE_TTL_SECONDS,
    "max_attempts": defaults.MAX_ATTEMPTS,
    "resend_cooldown_seconds": defaults.RESEND_COOLDOWN_SECONDS,
    "max_resends": defaults.MAX_RESENDS,
    "max_credentials": defaults.MAX_CREDENTIALS,
    "failure_block_seconds": defaults.FAILURE_BLOCK_SECONDS,
}


def limit_default(field: str) -> object:
    """The `defaults` constant behind a `LimitPolicy` field."""
    names = {
        "channel_sends_per_hour": "LIMIT_CHANNEL_SENDS_PER_HOUR",
        "sms_channel": "SMS_CHANNEL",
        "sms_allowlist": "SMS_ALLOWLIST",
        "sms_denylist": "SMS_DENYLIST",
    }
    variable = {v: k for k, v in ALL_LIMIT_ENV_FIELDS.items()}.get(field, "")
    # The limits on networks and the long failure cap keep their defaults beside their
    # variables, in `otpserver.settings.hardening`, written once there.
    module = hardening if field in hardening.LIMIT_BOUNDS else defaults
    return getattr(module, names.get(field) or variable.removeprefix("OTP_"))


def test_the_policies_start_from_the_defaults() -> None:
    """`OtpPolicy()` and `LimitPolicy()` carry exactly the values of `defaults`, and pass."""
    assert dataclasses.asdict(OtpPolicy()) == POLICY_DEFAULTS
    for field in dataclasses.fields(LimitPolicy):
        assert getattr(LimitPolicy(), field.name) == limit_default(field.name), field.name
    assert OtpPolicy().checked() == OtpPolicy()
    assert LimitPolicy().checked() == LimitPolicy()


def test_env_var_defaults_are_the_settings_defaults() -> None:
    """Reading an empty environment gives the dataclass defaults, and each documented default
    is the `defaults` value written as text."""
    assert Settings.from_env({}) == Settings()
    assert DeliveryConfig.from_env({}) == DeliveryConfig()
    documented = {var.name: var.default for var in (*ENV_VARS, *DELIVERY_ENV_VARS)}
    assert documented["OTP_PORT"] == str(defaults.PORT)
    assert documented["OTP_STORE_TIMEOUT_SECONDS"] == str(defaults.STORE_TIMEOUT_SECONDS)
    assert documented["OTP_MEMORY_MAX_IDS"] == str(defaults.MEMORY_MAX_IDS)
    assert documented["OTP_SMTP_PORT"] == str(defaults.SMTP_PORT)
    assert documented["OTP_DEFAULT_LOCALE"] == defaults.DEFAULT_LOCALE


def test_override_comments_quote_the_defaults() -> None:
    """Each override variable's comment ends with the shipped default, written from its value."""
    comments = {var.name: var.comment for var in ENV_VARS}
    for variable, field in POLICY_ENV_FIELDS.items():
        assert comments[variable].endswith(f"(default: {POLICY_DEFAULTS[field]})"), variable
    for variable, field in LIMIT_ENV_FIELDS.items():
        assert comments[variable].endswith(f"(default: {limit_default(field)})"), variable
    assert comments["OTP_LIMIT_CHANNEL_SENDS_PER_HOUR"].endswith(
        "(default: email=5000,phone=500,*=1000)"
    )
    assert default_text(defaults.LIMIT_CHANNEL_SENDS_PER_HOUR) == "email=5000,phone=500,*=1000"


def test_the_readme_table_lists_every_variable_with_its_default() -> None:
    """The generated table has one row per documented variable, showing its default."""
    table = sample.render_table()
    for var in sample.all_variables():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{var.name}` |"))
        assert (f"`{var.default}`" if var.default else "—") in row


CHANGE_A_DEFAULT = """
import json, sys
from pathlib import Path
import otpserver
from otpserver.otp.policy import OtpPolicy
from otpserver.limits.rules import LimitPolicy
from otpserver.settings import sample
from otpserver.settings.environment import ENV_VARS, Settings
from otpserver.http import openapi
import custom

root = Path(sys.argv[1])
comments = {var.name: var.comment for var in ENV_VARS}
print(json.dumps({
    "package": otpserver.__file__,
    "policy_ttl": OtpPolicy().ttl_seconds,
    "custom_ttl": custom.HOOKS.policy.ttl_seconds,
    "custom_length": custom.HOOKS.policy.length,
    "custom_failures": custom.HOOKS.limits.max_failures,
    "port": Settings.from_env({}).port,
    "ttl_comment": comments["OTP_TTL_SECONDS"],
    "failures_comment": comments["OTP_LIMIT_MAX_FAILURES"],
    "sample_in_sync": (root / "sample.env").read_text() == sample.render(),
    "readme_in_sync": (root / "README.md").read_text()
        == sample.with_table((root / "README.md").read_text()),
    "openapi_in_sync": (root / "openapi.json").read_text()
        == openapi.render(custom.HOOKS.credential_body, custom.HOOKS.policy),
    "sample": sample.render(),
    "table": sample.render_table(),
}))
"""


def run_in(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python in `tree` with that tree's packages first on the path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env={**clean, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_changing_one_default_moves_every_dependant(tmp_path: Path) -> None:
    """Edit four values in a copy of `defaults.py`: the policies, `custom/`, the settings, the
    variable comments follow at once; `sample.env`, the README table and `openapi.json` are
    out of sync (so the docs-sync tests fail) until one command regenerates them."""
    for name in ("otpserver", "custom"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("sample.env", "README.md", "openapi.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    module = tmp_path / "otpserver/settings/defaults.py"
    text = module.read_text()
    for old, new in (
        ("CODE_TTL_SECONDS = 300", "CODE_TTL_SECONDS = 240"),
        ("CODE_LENGTH = 6", "CODE_LENGTH = 8"),
        ("LIMIT_MAX_FAILURES = 10", "LIMIT_MAX_FAILURES = 7"),
        ("PORT = 8000", "PORT = 8080"),
    ):
        assert old in text
        text = text.replace(old, new)
    module.write_text(text)

    before = json.loads(run_in(tmp_path, "-c", CHANGE_A_DEFAULT, str(tmp_path)).stdout)
    assert before["package"] == str(tmp_path / "otpserver" / "__init__.py")
    assert (before["policy_ttl"], before["custom_ttl"], before["custom_length"]) == (240, 240, 8)
    assert (before["custom_failures"], before["port"]) == (7, 8080)
    assert before["ttl_comment"].endswith("(default: 240)")
    assert before["failures_comment"].endswith("(default: 7)")
    assert not before["sample_in_sync"]
    assert not before["readme_in_sync"]
    assert not before["openapi_in_sync"]
    assert "OTP_PORT=8080\n" in before["sample"]
    assert "| `OTP_PORT` | `8080` |" in before["table"]

    run_in(tmp_path, "-m", "otpserver.settings.sample", "--write")
    run_in(tmp_path, "-m", "otpserver.http.openapi", "--write")
    after = json.loads(run_in(tmp_path, "-c", CHANGE_A_DEFAULT, str(tmp_path)).stdout)
    assert (after["sample_in_sync"], after["readme_in_sync"], after["openapi_in_sync"]) == (
        True,
        True,
        True,
    )
    assert "(default: 240)" in (tmp_path / "README.md").read_text()
    assert "{8}" in (tmp_path / "openapi.json").read_text()
