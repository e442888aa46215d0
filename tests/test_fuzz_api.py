"""API fuzzing from `openapi.json` with schemathesis: every check, positive and negative data.

The examples, coverage and fuzzing phases run per operation; a stateful phase chains create,
resend and verify the way a browser does, carrying the cookie from one answer to the next.
Any 5xx, any response outside the document (status, headers, content type, body) and any
drift between what the document allows and what the server accepts fails the test.

Three built-in checks are replaced, not dropped:
- schemathesis expects 405 for undeclared methods, while SPEC §3 deliberately answers 404
  with an empty body (so the API reveals nothing about which paths exist):
  `undeclared_method_is_an_empty_404` checks exactly that;
- in the stateful phase, a link followed twice replays a spent cookie, which must be refused
  although it fits the schema, so "schema-valid data is accepted" is replaced there by
  `CookieLedger`: a live cookie is never refused as invalid, a spent or unknown one always is.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import string
from collections.abc import Iterator
from http.cookiejar import DefaultCookiePolicy
from itertools import count
from typing import Any

import hypothesis
import phonenumbers
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, CheckFunction, Response
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import ASGIClient

from otpserver.http.app import OtpApp, create_app
from otpserver.settings.api import SCOPES, parse_api_keys
from otpserver.settings.environment import Settings
from otpserver.settings.links import LinkSettings
from otpserver.settings.overrides import LimitOverrides
from otpserver.v1.keys import new_key
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT, PUBLIC_SITE, SIGNING, test_hooks
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.hygiene import RecordCapture, assert_no_leaks, captured_records
from tests.support.process import ROOT

BASE_URL = "https://otp.example.com"
COOKIE = "__Host-otp"
API_KEY, API_KEY_LINE = new_key("fuzz", SCOPES)
"""The key every `/v1` case carries, so the routes behind the key are what is fuzzed."""
_COOKIE_TEXT = re.compile(r"[A-Za-z0-9_-]{1,4096}")
_IDEMPOTENCY_KEY_TEXT = re.compile(r"[ -~]{1,255}")
_UNLIMITED = 10**9


def phone_numbers() -> st.SearchStrategy[str]:
    """Valid numbers of every region libphonenumber knows, in E.164 and as people type them."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is not None:
            numbers.append(example)
    formats = [phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL]
    return st.builds(
        phonenumbers.format_number, st.sampled_from(numbers), st.sampled_from(formats)
    ).filter(lambda text: len(text) <= 32)


def email_addresses() -> st.SearchStrategy[str]:
    """RFC 5321 dot-atom addresses under ordinary (not special-use) top-level domains.

    Built from parts rather than filtered from `st.emails()`, which is too slow for the
    coverage phase's many draws.
    """
    atom = st.text(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-", min_size=1)
    local = st.lists(atom.map(lambda a: a[:16]), min_size=1, max_size=3).map(".".join)
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
    domain = st.builds(
        lambda labels, tld: ".".join([*labels, tld]),
        st.lists(label, min_size=1, max_size=3),
        st.sampled_from(["com", "org", "net", "io", "de", "fr", "jp", "email", "museum"]),
    )
    return st.builds(lambda left, right: f"{left}@{right}", local, domain)


# The credential schema's formats name rules that no regular expression captures (a real phone
# number per libphonenumber; no special-use mail domain); these strategies generate values that
# follow them, so that "schema-valid data is accepted" means something for create.
schemathesis.openapi.format("phone", phone_numbers())
schemathesis.openapi.format("email", email_addresses())


def with_cookie_links(document: dict[str, Any]) -> dict[str, Any]:
    """The committed document plus OpenAPI links that hand each answer's cookie to the next call.

    Links are test wiring, not contract: the regex extractor is schemathesis syntax.
    """
    linked = copy.deepcopy(document)
    cookie = {f"cookie.{COOKIE}": f"$response.header.Set-Cookie#regex:{COOKIE}=([^;]+)"}
    follow_ups = {
        "resend": {"operationId": "resend", "parameters": cookie},
        "verify": {"operationId": "verify", "parameters": cookie},
    }
    paths = linked["paths"]
    for path, status in (
        ("/api/otp/create", "200"),
        ("/api/otp/resend", "200"),
        ("/api/otp/verify", "403"),
        ("/api/otp/verify", "429"),
    ):
        paths[path]["post"]["responses"][status]["links"] = follow_ups
    return linked


CONFIG = SchemathesisConfig.from_dict(
    {
        "base-url": BASE_URL,
        # The `/v1` routes' security scheme: schemathesis sends this key, and also checks
        # that a missing or wrong one is refused.
        "auth": {"openapi": {"apiKey": {"bearer": API_KEY}}},
        "generation": {"mode": "all", "max-examples": 25, "database": "none"},
        "phases": {
            "stateful": {
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        },
        "checks": {
            "unsupported_method": {"enabled": False},
            "allow_header_conformance": {"enabled": False},
            # Its probes go out over the network, not through this in-process app (and the
            # host is not real); tests/test_v1_auth.py proves every refusal of a bad key.
            "ignored_auth": {"enabled": False},
            # Narrower than the default: data outside the schema is a malformed request
            # (400), a body over OTP_MAX_BODY_BYTES refused before parsing (413), or the wrong
            # media type (415); never a 2xx, a 401-409 or a 5xx.
            "negative_data_rejection": {"expected-statuses": [400, 413, 415]},
        },
        "operations": [
            {
                # Behind an API key, a request whose key is the broken part is 401.
                "include-path-regex": "^/v1/",
                "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 413, 415]}},
            },
            {
                # The coverage phase asks for valid values at the documented length bounds
                # (a 3-character email address, a 2-character phone number); none exists, and
                # failing to find one costs seconds per draw. Fuzzing covers create instead.
                "include-operation-id": "create",
                "phases": {"coverage": {"enabled": False}},
            },
        ],
    }
)
SCHEMA = schemathesis.openapi.from_dict(
    with_cookie_links(json.loads((ROOT / "openapi.json").read_text())), config=CONFIG
)


# Refusals decided before the cookie is read: they say nothing about the cookie.
_BEFORE_COOKIE = {
    "OTP:INVALID_FORMAT",
    "BODY:INVALID",
    "BODY:UNSUPPORTED_MEDIA_TYPE",
    "BODY:TOO_LARGE",
}
# Refusals read from the entry a cookie holds, before its single-use ID is claimed: a spent
# cookie whose entry was already expired, out of attempts or blocked gets them.
_FROM_SPENT_ENTRY = {
    "OTP:EXPIRED",
    "OTP:TOO_MANY_ATTEMPTS",
    "OTP:VERIFICATION_NOT_ALLOWED",
    "OTP:RESEND_NOT_ALLOWED",
}


def is_page(response: Response) -> bool:
    """True for an HTML page (the sign-in link's), whose refusals are pages, not JSON."""
    return any(v.startswith("text/html") for v in response.headers.get("content-type", []))


def set_cookie_value(response: Response) -> str | None:
    """The cookie value a response sets ('' when it clears it), None when it sets none."""
    for header in response.headers.get("set-cookie", []):
        match = re.match(rf"{COOKIE}=([^;]*)", header)
        if match is not None:
            return match.group(1)
    return None


class CookieLedger:
    """Which cookies the server issued and which it has since spent (SPEC §4: every state
    change rotates the cookie, so the one sent with it is dead)."""

    def __init__(self) -> None:
        self.live: set[str] = set()

    def check_and_record(self, case: Case[Any], response: Response) -> None:
        """Assert the answer fits the cookie's life, then record what the answer changed."""
        sent = case.cookies.get(COOKIE) if case.cookies else None
        failed = response.status_code >= 400 and not is_page(response)
        error = response.json().get("error") if failed else None
        if case.operation.label in ("POST /api/otp/resend", "POST /api/otp/verify"):
            if sent in self.live:
                assert error != "OTP:INVALID_COOKIE", f"a live cookie was refused: {response.text}"
            elif error in _FROM_SPENT_ENTRY:
                # SECURITY.md: a replayed cookie may get the refusal its spent entry already
                # had, decided before any claim, so nothing is evaluated and nothing changes.
                assert set_cookie_value(response) is None, response.text
            elif error not in _BEFORE_COOKIE:
                assert error == "OTP:INVALID_COOKIE", (
                    f"a spent or unknown cookie was answered {response.status_code}: "
                    f"{response.text}"
                )
        new = set_cookie_value(response)
        if new is not None:
            self.live.discard(str(sent))
            if new:
                self.live.add(new)


class FuzzTarget:
    """One production-mode app with limits out of the way, and a client that keeps no cookies."""

    def __init__(self) -> None:
        self.sender = RecordingSender()
        self.clock = FakeClock()
        settings = Settings(
            master_key=MASTER_KEY,
            delivery=PUBLIC_SITE,
            # Every /v1 call carries a key with every scope, and no per-key limit in the way.
            api=dataclasses.replace(SIGNING, keys=parse_api_keys(API_KEY_LINE), key_requests=10**9),
            # Resends are allowed at once, so fuzzed resends reach the sender.
            policy_overrides={"resend_cooldown_seconds": 0},
            # Every documented route is served: the link routes exist only with links on.
            links=LinkSettings(enabled=True, cross_device=True, base_url=BASE_URL),
            limit_overrides=LimitOverrides(
                numbers={
                    "credential_sends": _UNLIMITED,
                    "address_requests": _UNLIMITED,
                    "address_verifies": _UNLIMITED,
                    "prefix_sends": _UNLIMITED,
                    "max_failures": 100,
                    "network_requests": _UNLIMITED,
                    "network_verifies": _UNLIMITED,
                    "network_budget_percent": 100,
                },
                channel_sends_per_hour={"*": _UNLIMITED, "email": _UNLIMITED, "phone": _UNLIMITED},
            ),
        )
        self.app: OtpApp = create_app(
            settings, test_hooks(HOOKS, self.clock, self.sender), clock=self.clock
        )
        # Starlette types scopes as MutableMapping, schemathesis as dict: the same ASGI app.
        self.client = ASGIClient(self.app, base_url=BASE_URL)  # type: ignore[arg-type]
        # Each call carries exactly the cookie the case (or the link) chose, never a stale one.
        self.client.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._serial = count()
        self.ledger = CookieLedger()
        self.cookies_seen: list[str] = []

    def mint_cookie(self) -> str:
        """A real, live cookie with one pending credential."""
        response = self.client.post(
            "/api/otp/create", json={"email": f"fuzz{next(self._serial)}@example.com"}
        )
        assert response.status_code == 200, response.text
        match = re.search(rf"{COOKIE}=([^;]+)", response.headers["set-cookie"])
        assert match is not None
        return match.group(1)

    def prepare(self, case: Case[Any]) -> None:
        """Give every schema-valid cookie a real value, so positive data can really be accepted.

        A random string that fits the cookie's pattern is schema-valid but can never decrypt;
        swapping in a live cookie lets the body be what is tested. Cookies that break the
        pattern (negative data) are sent as generated.
        """
        value = case.cookies.get(COOKIE) if case.cookies else None
        if isinstance(value, str) and _COOKIE_TEXT.fullmatch(value):
            case.cookies[COOKIE] = self.mint_cookie()
        # A generated Idempotency-Key repeats across cases with other bodies, which is a
        # client bug the server answers 422; each case gets a key of its own instead, so
        # the body is what is tested (the replay rules have tests of their own).
        key = case.headers.get("Idempotency-Key") if case.headers else None
        if isinstance(key, str) and _IDEMPOTENCY_KEY_TEXT.fullmatch(key):
            case.headers["Idempotency-Key"] = f"fuzz-{next(self._serial)}"


@functools.cache
def target() -> FuzzTarget:
    """The one app and client of this module, shared with the state machine, built on first use
    (schemathesis keeps its lifespan running)."""
    return FuzzTarget()


def declared_methods(case: Case[Any]) -> set[str]:
    """The methods `openapi.json` declares for the path of `case`."""
    item = SCHEMA.raw_schema["paths"].get(case.path, {})
    return {method.upper() for method in item}


def undeclared_method_is_an_empty_404(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """SPEC §3: a method the document does not declare answers 404 with an empty body."""
    method = str(response.request.method)
    if method in declared_methods(case) or method == "OPTIONS":
        return None
    assert response.status_code == 404, f"{method} {case.path} answered {response.status_code}"
    assert response.content == b"", f"{method} {case.path} answered with a body"
    return True


def security_headers_on_every_response(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """SPEC §3: every response, errors and 404s included, is uncacheable and unsniffable;
    only the public key set may be cached (SPEC §11), for at most an hour."""
    cache = response.headers.get("cache-control")
    if case.path == "/.well-known/jwks.json" and response.status_code == 200:
        assert cache is not None
        assert re.fullmatch(r"public, max-age=([1-9][0-9]{0,3})", cache[0]), cache
        assert int(cache[0].rpartition("=")[2]) <= 3600, cache
    else:
        assert cache == ["no-store"], response.headers
    assert response.headers.get("x-content-type-options") == ["nosniff"], response.headers
    return True


def remember_cookies(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Not a check: keeps every cookie the server set, for the log sweep at the end."""
    value = set_cookie_value(response)
    if value:
        target().cookies_seen.append(value)
    return None


def refusals_carry_their_documented_status(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """Every error body names a code whose class has exactly the status it was sent with."""
    if response.status_code < 400 or not response.content or is_page(response):
        return None
    from otpserver.errors import ERROR_CLASSES

    status_of = {cls.code: cls.status for cls in ERROR_CLASSES}
    code = response.json()["error"]
    assert status_of.get(code) == response.status_code, (code, response.status_code)
    return True


EXTRA_CHECKS: list[CheckFunction] = [
    undeclared_method_is_an_empty_404,
    security_headers_on_every_response,
    refusals_carry_their_documented_status,
    remember_cookies,
]


@SCHEMA.parametrize()
def test_every_operation_conforms_to_openapi(case: Case[Any]) -> None:
    """Positive and negative cases of every operation pass every check, built-in and ours."""
    fuzz = target()
    fuzz.prepare(case)
    case.call_and_validate(session=fuzz.client, additional_checks=EXTRA_CHECKS)


class Browsing(SCHEMA.as_state_machine()):  # type: ignore[misc]
    """Chains create → resend/verify → verify..., each step with the cookie the last one set.

    Each scenario gets an app of its own, so that replaying a scenario (to shrink a failure)
    meets the same server state and takes the same links.
    """

    def setup(self) -> None:
        self.fuzz = FuzzTarget()

    def teardown(self) -> None:
        target().cookies_seen += self.fuzz.cookies_seen
        target().sender.sent += self.fuzz.sender.sent

    def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
        return {"session": self.fuzz.client}

    def after_call(self, response: Response, case: Case[Any]) -> None:
        super().after_call(response, case)
        self.fuzz.ledger.check_and_record(case, response)
        value = set_cookie_value(response)
        if value:
            self.fuzz.cookies_seen.append(value)

    def validate_response(
        self,
        response: Response,
        case: Case[Any],
        additional_checks: list[CheckFunction] | None = None,
        **kwargs: Any,
    ) -> None:
        checks = [*EXTRA_CHECKS, *(additional_checks or [])]
        super().validate_response(response, case, additional_checks=checks, **kwargs)


class TestStatefulBrowsing(Browsing.TestCase):  # type: ignore[name-defined,misc]
    """Stateful phase: sequences of linked calls never break a check."""

    # Generation only: each step's inputs come from earlier answers (fresh random cookies),
    # so replaying a failing sequence to shrink it draws differently and hypothesis would
    # report that (FlakyStrategyDefinition) instead of the failure itself.
    settings = hypothesis.settings(
        max_examples=20,
        stateful_step_count=12,
        phases=[hypothesis.Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )


@pytest.fixture(scope="module", autouse=True)
def fuzz_logs() -> Iterator[RecordCapture]:
    """Every record logged while this module's fuzzing runs."""
    with captured_records() as records:
        yield records


def test_the_fuzzed_app_logged_no_secret(fuzz_logs: RecordCapture) -> None:
    """After all the fuzzing above, no record holds a code, a cookie or the master key."""
    fuzz = target()
    secrets = [m.code for m in fuzz.sender.sent] + fuzz.cookies_seen + [MASTER_KEY_TEXT]
    assert fuzz.cookies_seen
    assert_no_leaks(fuzz_logs.text, secrets)
