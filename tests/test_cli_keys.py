"""`apikey new` and `keys status`: a key shown once with its digest entry; the ring, no secret."""

from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest

from otpserver.crypto.atrest import master_key_fingerprint
from otpserver.settings.api import parse_api_keys
from otpserver.v1.keys import ApiKeyring
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT
from tests.support.api import Browser
from tests.test_cli import run_cli

OLD_KEY = bytes(range(64, 96))
OLD_KEY_TEXT = base64.urlsafe_b64encode(OLD_KEY).rstrip(b"=").decode()


def test_apikey_new_prints_a_key_and_its_digest_entry() -> None:
    """The printed key authenticates against the printed entry, which holds only its
    SHA-256, and two runs never print the same key."""
    first = run_cli("apikey", "new", "--id", "shop", "--scopes", "challenges,totp")
    second = run_cli("apikey", "new", "--id", "shop", "--scopes", "challenges+totp")
    assert first.returncode == 0, first.stderr
    keys = [re.search(r"otpk_shop_[0-9A-Za-z]{43}", r.stdout) for r in (first, second)]
    assert keys[0] is not None
    assert keys[1] is not None
    key = keys[0].group()
    assert key != keys[1].group()
    entry = re.search(r"shop:[0-9a-f]{64}:challenges\+totp", first.stdout)
    assert entry is not None
    assert hashlib.sha256(key.encode()).hexdigest() in entry.group()
    found = ApiKeyring(parse_api_keys(entry.group())).find(key)
    assert found is not None
    assert found.scopes == {"challenges", "totp"}


@pytest.mark.parametrize(
    "args", [("--id", "Shop!", "--scopes", "totp"), ("--id", "shop", "--scopes", "admin")]
)
def test_apikey_new_refuses_bad_ids_and_scopes(args: tuple[str, ...]) -> None:
    """A malformed id or an unknown scope exits 2 and prints no key."""
    result = run_cli("apikey", "new", *args)
    assert result.returncode == 2
    assert "otpk_" not in result.stdout


def test_keys_status_shows_the_ring_without_secrets(redis_url: str) -> None:
    """After codes were sealed under an old master key, status lists the KEK epoch as opened
    by the previous key, both fingerprints and three signing key ids, and no key."""
    from tests.support.syncapp import SyncApp

    old = SyncApp(redis_url, master_key=OLD_KEY)
    old.clock.now = time.time()  # the command reads the store at the real time
    try:
        browser = Browser(old.client)
        assert old.run(browser.create("ada@example.com")).status_code == 200
    finally:
        old.close()
    env = {
        "OTP_ENV": "development",
        "OTP_STORE_URL": redis_url,
        "OTP_MASTER_KEY": MASTER_KEY_TEXT,
        "OTP_MASTER_KEY_PREVIOUS": OLD_KEY_TEXT,
    }
    result = run_cli("keys", "status", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert master_key_fingerprint(MASTER_KEY).hex() in out
    assert f"previous key {master_key_fingerprint(OLD_KEY).hex()}" in out
    assert "(current epoch)" in out
    assert len(re.findall(r"\(period \d+, (previous|signs now|next)\)", out)) == 3
    for secret in (MASTER_KEY_TEXT, OLD_KEY_TEXT, MASTER_KEY.hex(), OLD_KEY.hex()):
        assert secret not in out
    dropped = run_cli("keys", "status", env={**env, "OTP_MASTER_KEY_PREVIOUS": ""})
    assert dropped.returncode == 1
    assert "no configured master key" in dropped.stdout


def test_help_explains_the_key_commands() -> None:
    """`--help` lists apikey and keys, and each subcommand explains itself."""
    top = run_cli("--help")
    assert "apikey" in top.stdout
    assert "keys" in top.stdout
    new = run_cli("apikey", "new", "--help")
    assert new.returncode == 0
    assert "OTP_API_KEYS" in new.stdout
    status = run_cli("keys", "status", "--help")
    assert status.returncode == 0
    assert "OTP_MASTER_KEY_PREVIOUS" in status.stdout
