"""Property-based attacks on the second-factor routes (hypothesis), on a real Redis.

- Any text in `code`, for TOTP and backup codes alike, is a domain status or a 400 with a
  stable code: never a 500, never an approval of a code that is not the right one.
- Any text in place of a sealed blob is `invalid` or a 400, never a 500.
- Arbitrary subjects, nonces and counts are accepted or refused with `BODY:INVALID`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpserver.settings.api import ApiSettings
from otpserver.settings.factors import FactorSettings
from tests.conftest import ISSUER
from tests.support.factors import SUBJECT, api_keys, app_code, auth
from tests.support.redis_server import RedisServer, external_redis_url
from tests.support.syncapp import SyncApp

FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
STATUSES = {"incorrect", "locked", "invalid", "expired"}
CLIENT_ERRORS = {"OTP:INVALID_FORMAT", "BODY:INVALID"}


class Factors:
    """One app on Redis with an enrolment and a backup-code set for `SUBJECT`."""

    def __init__(self, url: str) -> None:
        self.app = SyncApp(
            url,
            api=ApiSettings(issuer=ISSUER, keys=api_keys("totp", "backup_codes", "devices")),
            # Failures never lock here, so every example is compared in full.
            factors=FactorSettings(totp_max_failures=100, backup_max_failures=100),
        )
        started = self.post(
            "/v1/totp/enrolments", {"subject": SUBJECT, "account": "ada@example.com"}
        )
        self.secret = started["secret"]
        confirmed = self.post(
            "/v1/totp/enrolments/confirm",
            {
                "subject": SUBJECT,
                "pending": started["pending"],
                "code": app_code(self.secret, self.app.clock.now),
            },
        )
        self.enrolment = confirmed["enrolment"]
        made = self.post("/v1/backup-codes", {"subject": SUBJECT, "count": 5})
        self.codes, self.set = made["codes"], made["set"]

    def send(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        response = self.app.run(self.app.client.post(path, json=body, headers=auth()))
        return response.status_code, response.json()

    def post(self, path: str, body: Any) -> dict[str, Any]:
        status, answer = self.send(path, body)
        assert status in (200, 201), answer
        return answer


@pytest.fixture(scope="module")
def factors(redis_server: RedisServer | None) -> Iterator[Factors]:
    """The shared app, on an emptied Redis."""
    url = external_redis_url() or (redis_server.url if redis_server else "")
    redis.Redis.from_url(url).flushdb()
    world = Factors(url)
    yield world
    world.app.close()


def assert_refused(status: int, answer: dict[str, Any]) -> None:
    """A domain refusal in a 200, or a 400 with a stable code."""
    if status == 200:
        assert answer["status"] in STATUSES, answer
    else:
        assert (status, answer["error"]) in {(400, code) for code in CLIENT_ERRORS}, answer


@FUZZ
@given(code=st.text(max_size=80))
def test_any_totp_code_text_is_refused_cleanly(factors: Factors, code: str) -> None:
    """Any text that is not the current code is incorrect or a 400, never a 500."""
    right = {app_code(factors.secret, factors.app.clock.now, steps=s) for s in (-1, 0, 1)}
    if code.strip().replace(" ", "") in right:
        return
    body = {"subject": SUBJECT, "enrolment": factors.enrolment, "code": code}
    assert_refused(*factors.send("/v1/totp/verify", body))


@FUZZ
@given(code=st.text(max_size=80))
def test_any_backup_code_text_is_refused_cleanly(factors: Factors, code: str) -> None:
    """Any text that spells none of the set's codes is incorrect or a 400, never a 500."""
    spelled = code.upper().replace(" ", "").replace("-", "")
    if any(c.replace("-", "") == spelled for c in factors.codes):
        return
    body = {"subject": SUBJECT, "set": factors.set, "code": code}
    assert_refused(*factors.send("/v1/backup-codes/redeem", body))


@FUZZ
@given(
    blob=st.one_of(
        st.text(max_size=200),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    ),
    route=st.sampled_from(
        ["/v1/totp/verify", "/v1/totp/enrolments/confirm", "redeem", "/v1/devices/check"]
    ),
)
def test_any_blob_text_is_invalid_or_a_400(factors: Factors, blob: str, route: str) -> None:
    """Arbitrary text in place of an enrolment, pending token, set or device never opens."""
    if route == "/v1/devices/check":
        status, answer = factors.send(route, {"subject": SUBJECT, "device": blob})
        if status == 200:
            assert answer == {"trusted": False, "reason": "invalid"}
        else:
            assert (status, answer["error"]) == (400, "BODY:INVALID"), answer
        return
    if route == "redeem":
        path, body = "/v1/backup-codes/redeem", {"set": blob, "code": factors.codes[0]}
    elif route.endswith("confirm"):
        path, body = route, {"pending": blob, "code": "123456"}
    else:
        path, body = route, {"enrolment": blob, "code": "123456"}
    status, answer = factors.send(path, {"subject": SUBJECT, **body})
    if status == 200:
        assert answer == {"status": "invalid"}
    else:
        assert (status, answer["error"]) == (400, "BODY:INVALID"), answer


@FUZZ
@given(
    subject=st.one_of(st.text(max_size=140), st.integers(), st.none()),
    count=st.one_of(
        st.integers(-5, 30), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3)
    ),
)
def test_arbitrary_generation_bodies_never_fail(factors: Factors, subject: Any, count: Any) -> None:
    """Any subject and count either generate a set (201) or are a `BODY:INVALID` 400."""
    if isinstance(count, int) and 5 <= count <= 20:
        count = 4  # Generating a real set costs scrypt time; its success is tested elsewhere.
    status, answer = factors.send("/v1/backup-codes", {"subject": subject, "count": count})
    assert (status, answer["error"]) == (400, "BODY:INVALID"), answer
