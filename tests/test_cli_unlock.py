"""`unlock`: the host clears a locked credential's failure counts (SECURITY.md item 50)."""

from __future__ import annotations

import dataclasses

from tests.conftest import MASTER_KEY_TEXT
from tests.support.api import Browser, wrong
from tests.support.syncapp import NO_LIMITS, SyncApp
from tests.test_cli import run_cli


def test_unlock_clears_a_capped_credential_for_any_spelling(redis_url: str) -> None:
    """A credential at its failure cap is refused until `unlock` (given another spelling of
    the same mailbox) clears it; the command never prints the address."""
    numbers = {**NO_LIMITS.numbers, "max_failures": 2, "failure_cap": 2}
    app = SyncApp(redis_url, limit_overrides=dataclasses.replace(NO_LIMITS, numbers=numbers))
    try:
        browser = Browser(app.client)
        assert app.run(browser.create("ada@gmail.com")).status_code == 200
        code = app.sender.last_code
        for _ in range(2):
            app.clock.advance(5)
            assert app.run(browser.verify(wrong(code))).status_code == 403
        app.clock.advance(3600)
        assert app.run(Browser(app.client).create("ada@gmail.com")).status_code == 429

        env = {
            "OTP_ENV": "development",
            "OTP_STORE_URL": redis_url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
        }
        # The tests' own hooks, as the app above: a fork's credential schema is not the core's.
        result = run_cli(
            "unlock",
            "email",
            "A.D.A+support@googlemail.com",
            env=env,
            module="tests.support.server",
        )
        assert result.returncode == 0, result.stderr
        assert "ada" not in result.stdout.lower()
        assert app.run(Browser(app.client).create("ada@gmail.com")).status_code == 200
    finally:
        app.close()


def test_unlock_refuses_the_memory_store_and_bad_addresses(redis_url: str) -> None:
    """On the memory store there is nothing another process can clear (exit 1); an address
    the schema refuses is a usage error (exit 2)."""
    memory = run_cli("unlock", "email", "ada@example.com", env={"OTP_ENV": "development"})
    assert memory.returncode == 1
    assert "restart" in memory.stderr
    env = {"OTP_ENV": "development", "OTP_STORE_URL": redis_url, "OTP_MASTER_KEY": MASTER_KEY_TEXT}
    assert run_cli("unlock", "email", "not an address", env=env).returncode == 2
