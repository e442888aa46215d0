"""Races across processes: the real server with three workers on one real Redis.

Parallel requests go out on separate connections, so the kernel spreads them over the
workers; only the store's atomic steps stand between them. Limits are set small so that
every count below is exact, and every client address is its own (the server trusts
127.0.0.1 as a proxy, so X-Forwarded-For names the address).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT
from tests.support.hygiene import assert_no_leaks, redis_key_material
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer, external_redis_url
from tests.support.remote import TRUST_LOOPBACK, RemoteBrowser, Seen, burst, errors

pytestmark = pytest.mark.e2e

CREDENTIAL_SENDS = 3
ADDRESS_REQUESTS = 8
MAX_FAILURES = 5
FIXED_CODE = "123456"
GUESS = "000000"
FIXED = {"race@example.com", "lock@example.com"}
"""Test identities with the fixed code: never delivered, so no stderr line to wait for."""


class Racing:
    """The server under test and every cookie and code the tests saw."""

    def __init__(self, server: ServerProcess, url: str) -> None:
        self.server = server
        self.url = url
        self.seen = Seen(codes=[FIXED_CODE])

    def browser(self, address: str) -> RemoteBrowser:
        return RemoteBrowser(self.server.url, address, self.seen)

    def sends_to(self, credential: str) -> list[str]:
        codes = self.server.codes_for(credential)
        self.seen.codes += codes
        return codes


@pytest.fixture(scope="module")
def racing(redis_server: RedisServer | None) -> Iterator[Racing]:
    """Three workers on an emptied Redis, with small, exact limits."""
    url = external_redis_url() or (redis_server.url if redis_server else "")
    redis.Redis.from_url(url).flushdb()
    server = ServerProcess(
        {
            "OTP_WORKERS": "3",
            "OTP_STORE_URL": url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_RESEND_COOLDOWN_SECONDS": "0",
            "OTP_LIMIT_CREDENTIAL_SENDS": str(CREDENTIAL_SENDS),
            "OTP_LIMIT_ADDRESS_REQUESTS": str(ADDRESS_REQUESTS),
            "OTP_LIMIT_ADDRESS_VERIFIES": "1000",
            "OTP_LIMIT_MAX_FAILURES": str(MAX_FAILURES),
            "OTP_TEST_CREDENTIALS": ",".join(f"{a}={FIXED_CODE}" for a in sorted(FIXED)),
            **TRUST_LOOPBACK,
        }
    )
    server.start()
    yield Racing(server, url)
    server.stop()


async def test_parallel_verifies_of_one_cookie_evaluate_exactly_one(racing: Racing) -> None:
    """Of 30 parallel verifies of one cookie, right and wrong codes mixed, exactly one counts."""
    browser = racing.browser("198.51.100.1")
    assert (await browser.create("race@example.com")).status_code == 200
    cookie = browser.cookie
    guesses = [FIXED_CODE if i % 2 else GUESS for i in range(30)]
    responses = await burst(
        racing.browser("198.51.100.1").verify(g, cookie=cookie) for g in guesses
    )
    outcomes = errors(responses)
    evaluated = [o for o in outcomes if o in ("OK", "OTP:INCORRECT")]
    assert len(evaluated) == 1, outcomes
    assert outcomes.count("OTP:INVALID_COOKIE") == 29, outcomes


async def test_parallel_wrong_guesses_count_every_evaluated_guess(racing: Racing) -> None:
    """Ten copies each of three cookies guessed wrong at once: three guesses are evaluated,
    each cookie loses one attempt, and the credential's failure count rises by exactly three."""
    cookies = []
    for i in range(3):
        browser = racing.browser(f"198.51.100.{10 + i}")
        assert (await browser.create("lock@example.com")).status_code == 200
        cookies.append(browser.cookie)
    browsers = [racing.browser("198.51.100.20") for _ in range(30)]
    responses = await burst(b.verify(GUESS, cookie=cookies[i % 3]) for i, b in enumerate(browsers))
    outcomes = errors(responses)
    assert outcomes.count("OTP:INCORRECT") == 3, outcomes
    assert outcomes.count("OTP:INVALID_COOKIE") == 27, outcomes
    assert all(r.json()["attemptsLeft"] == 2 for r in responses if r.status_code == 403)

    # Keep guessing with the cookies the evaluated guesses returned: the lockout must engage
    # after exactly MAX_FAILURES - 3 more wrong codes, so not one failure above was lost.
    survivors = [b for b, r in zip(browsers, responses, strict=True) if r.status_code == 403]
    more = 0
    for browser in survivors * 2:
        response = await browser.verify(GUESS)
        if response.status_code == 429:
            assert response.json()["error"] == "RATE:LIMITED"
            break
        assert response.json()["error"] == "OTP:INCORRECT", response.text
        more += 1
    assert more == MAX_FAILURES - 3


async def test_parallel_resends_send_once_and_spend_one_send(racing: Racing) -> None:
    """Fifteen parallel resends of one cookie send one code and use one send of the allowance."""
    browser = racing.browser("198.51.100.30")
    assert (await browser.create("resend@example.com")).status_code == 200
    cookie = browser.cookie
    racers = [racing.browser("198.51.100.30") for _ in range(15)]
    responses = await burst(r.resend(cookie=cookie) for r in racers)
    outcomes = errors(responses)
    assert outcomes.count("OK") == 1, outcomes
    assert outcomes.count("OTP:INVALID_COOKIE") == 14, outcomes
    assert len(racing.sends_to("resend@example.com")) == 2
    winner = racers[outcomes.index("OK")]

    # One create and one resend so far: the allowance has exactly one send left.
    assert (await winner.resend()).status_code == 200
    refused = await winner.resend()
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "RATE:LIMITED"
    assert len(racing.sends_to("resend@example.com")) == CREDENTIAL_SENDS


async def test_parallel_creates_for_one_credential_send_exactly_the_limit(racing: Racing) -> None:
    """Twenty parallel creates for one credential from twenty addresses: exactly the limit send."""
    browsers = [racing.browser(f"203.0.113.{i}") for i in range(20)]
    responses = await burst(b.create("burst@example.com") for b in browsers)
    outcomes = errors(responses)
    assert outcomes.count("OK") == CREDENTIAL_SENDS, outcomes
    assert outcomes.count("RATE:LIMITED") == 20 - CREDENTIAL_SENDS, outcomes
    assert len(racing.sends_to("burst@example.com")) == CREDENTIAL_SENDS


async def test_parallel_creates_from_one_address_pass_exactly_the_limit(racing: Racing) -> None:
    """Twenty parallel creates from one address for twenty credentials: exactly the limit pass."""
    browsers = [racing.browser("192.0.2.99") for _ in range(20)]
    responses = await burst(b.create(f"spray{i}@example.com") for i, b in enumerate(browsers))
    outcomes = errors(responses)
    assert outcomes.count("OK") == ADDRESS_REQUESTS, outcomes
    assert outcomes.count("RATE:LIMITED") == 20 - ADDRESS_REQUESTS, outcomes
    sent = sum(len(racing.sends_to(f"spray{i}@example.com")) for i in range(20))
    assert sent == ADDRESS_REQUESTS


def test_the_racing_servers_logged_no_secret(racing: Racing) -> None:
    """Everything the three workers printed holds no cookie, code, key or master key."""
    for line in racing.server.output().splitlines():
        prefix = "otp dev-sender: to="
        if line.startswith(prefix):
            racing.seen.codes.append(line.rpartition("code=")[2])
    secrets = [*racing.seen.secrets(), MASTER_KEY_TEXT]
    secrets += redis_key_material(racing.url, MASTER_KEY)
    assert_no_leaks(racing.server.output(), secrets)
