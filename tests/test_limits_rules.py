"""The pure limit rules: window arithmetic, all-or-nothing decisions, policy checks, plans."""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

import pytest

from otpserver.errors import ConfigError
from otpserver.limits.rules import (
    FAILURE_KINDS,
    MAX_FAILURES_CEILING,
    LimitPolicy,
    correct_code_counters,
    counter_key,
    credential_keys,
    destination_allowed,
    failure_keys,
    lockout,
    phone_prefix,
    send_counters,
    switch_counters,
    verify_counters,
)
from otpserver.otp.credentials import Credential
from otpserver.settings.overrides import LimitOverrides, parse_destinations
from otpserver.stores.counters import (
    Counter,
    Decision,
    Window,
    charged,
    decide,
    retry_after_seconds,
)

NOW = 1_800_000_000_000
SECRET = bytes(32)
EMAIL = Credential("email", "ada@example.com")
PHONE = Credential("phone", "+14155550100")


def counter(limit: int = 3, window_ms: int = 60_000, lock_ms: int = 0, cost: int = 1) -> Counter:
    return Counter("test", b"k", limit, window_ms, lock_ms, cost)


def test_a_first_hit_opens_a_window_of_the_counters_length() -> None:
    """The window starts at the first hit and lasts `window_ms`."""
    assert charged(counter(), None, NOW) == Window(1, NOW + 60_000)


def test_later_hits_keep_the_window_end() -> None:
    """Fixed windows: a hit inside the window never moves its end."""
    assert charged(counter(), Window(1, NOW + 5), NOW) == Window(2, NOW + 5)


def test_an_expired_window_counts_as_empty() -> None:
    """At its end instant a window is gone, both for decisions and for charging."""
    assert charged(counter(), Window(3, NOW), NOW) == Window(1, NOW + 60_000)
    assert decide([counter()], [Window(3, NOW)], NOW).allowed


def test_a_full_counter_refuses_until_its_window_ends() -> None:
    """`limit` hits are allowed; the next is refused for what remains of the window."""
    assert decide([counter()], [Window(2, NOW + 10)], NOW).allowed
    assert decide([counter()], [Window(3, NOW + 10)], NOW) == Decision(False, 10, (0,))


def test_a_decision_waits_for_the_last_refusing_counter() -> None:
    """With several full counters, Retry-After is the latest of their ends."""
    decision = decide(
        [counter(), counter(), counter()],
        [Window(3, NOW + 10), Window(0, NOW + 99), Window(3, NOW + 50)],
        NOW,
    )
    assert decision == Decision(False, 50, (0, 2))


def test_a_zero_limit_refuses_for_a_whole_window() -> None:
    """A counter that allows nothing refuses even before its first hit."""
    assert decide([counter(limit=0)], [None], NOW) == Decision(False, 60_000, (0,))


def test_a_lock_starts_when_the_limit_is_reached() -> None:
    """The hit that fills a locking counter restarts its window with the lock's length."""
    locking = counter(limit=2, lock_ms=900_000)
    assert charged(locking, Window(1, NOW + 5), NOW) == Window(2, NOW + 900_000)
    assert charged(locking, None, NOW) == Window(1, NOW + 60_000)


def test_a_check_only_counter_costs_nothing() -> None:
    """`cost=0` consults a counter without charging it."""
    assert charged(counter(cost=0), Window(1, NOW + 5), NOW) == Window(1, NOW + 5)
    assert not decide([counter(cost=0)], [Window(3, NOW + 5)], NOW).allowed


def test_retry_after_is_rounded_up_to_whole_seconds() -> None:
    """A client told to wait is never told a second too little."""
    assert retry_after_seconds(Decision(False, 1)) == 1
    assert retry_after_seconds(Decision(False, 1000)) == 1
    assert retry_after_seconds(Decision(False, 1001)) == 2


def test_counter_keys_hide_credentials_and_addresses() -> None:
    """Keys are a kind tag and 128 bits of HMAC: no credential text, distinct per secret."""
    key = counter_key(SECRET, "a", "198.51.100.7")
    assert key.startswith(b"a:")
    assert len(key) == 2 + 32
    assert b"198" not in key
    assert key != counter_key(b"\1" * 32, "a", "198.51.100.7")
    assert key != counter_key(SECRET, "v", "198.51.100.7")


def test_a_credentials_two_keys_are_the_halves_of_one_hmac() -> None:
    """The failures and sends keys are tagged, distinct, secret-dependent, and exactly the
    two halves of HMAC-SHA256 over the channel and address."""
    failures, sends = credential_keys(SECRET, EMAIL)
    digest = hmac.new(SECRET, b"c\0email\0" + EMAIL.address.encode(), "sha256").digest()
    assert (failures, sends) == (
        b"f:" + digest[:16].hex().encode(),
        b"s:" + digest[16:].hex().encode(),
    )
    assert b"ada" not in failures + sends
    assert credential_keys(b"\1" * 32, EMAIL) != (failures, sends)
    assert lockout(LimitPolicy(), SECRET, EMAIL, cost=1).key == failures


@pytest.mark.parametrize("credential", [EMAIL, PHONE])
def test_a_correct_codes_plan_names_the_failure_counts_it_clears(credential: Credential) -> None:
    """A correct code clears the counts its own plan keyed (the limiter takes them from
    the plan by kind): exactly `failure_keys`, both of them."""
    planned = correct_code_counters(LimitPolicy(), SECRET, credential, "198.51.100.7")
    clears = tuple(c.key for c in planned if c.kind in FAILURE_KINDS)
    assert clears == failure_keys(SECRET, credential)


def test_a_send_touches_lockout_credential_address_and_channel() -> None:
    """Email sends check both failure counts without charging them and charge the rest:
    credential, address and its /24, the channel and the /24's share of it."""
    counters = send_counters(LimitPolicy(), SECRET, EMAIL, "198.51.100.7")
    assert [(c.kind, c.cost) for c in counters] == [
        ("failures", 0),
        ("failure-cap", 0),
        ("credential-sends", 1),
        ("address-requests", 1),
        ("network-requests", 1),
        ("channel-budget", 1),
        ("network-budget", 1),
    ]
    assert len({c.key for c in counters}) == len(counters)


def test_an_sms_send_also_touches_its_prefix_breaker() -> None:
    """Phone sends add a locking per-prefix counter."""
    policy = LimitPolicy()
    breaker = send_counters(policy, SECRET, PHONE, "198.51.100.7")[-1]
    assert breaker.kind == "prefix-breaker"
    assert breaker.lock_ms == policy.prefix_breaker_seconds * 1000
    assert breaker.key == counter_key(SECRET, "p", "+141555")


def test_email_and_phone_of_the_same_text_are_different_credentials() -> None:
    """The channel is part of every per-credential key."""
    email = send_counters(LimitPolicy(), SECRET, Credential("email", "x"), "a")[1]
    phone = send_counters(LimitPolicy(), SECRET, Credential("phone", "x"), "a")[1]
    assert email.key != phone.key


def test_switching_and_verifying_touch_what_they_need() -> None:
    """A switch only checks; a verify pre-charges both failure counts and the address."""
    policy = LimitPolicy()
    switch = switch_counters(policy, SECRET, EMAIL, "a")
    verify = verify_counters(policy, SECRET, EMAIL, "a")
    assert [(c.kind, c.cost) for c in switch] == [
        ("failures", 0),
        ("failure-cap", 0),
        ("address-requests", 0),
    ]
    assert [(c.kind, c.cost) for c in verify] == [
        ("failures", 1),
        ("failure-cap", 1),
        ("address-verifies", 1),
    ]
    assert verify[0].key == switch[0].key == send_counters(policy, SECRET, EMAIL, "a")[0].key
    assert verify[1].key == switch[1].key != verify[0].key


def test_channel_budgets_fall_back_to_the_star_entry() -> None:
    """A channel not named uses the `*` budget."""
    policy = LimitPolicy(channel_sends_per_hour={"email": 7, "*": 3})
    assert policy.channel_budget("email") == 7
    assert policy.channel_budget("carrier-pigeon") == 3


def test_the_default_policy_is_valid_and_caps_failures_at_100() -> None:
    """Defaults pass the checks; more than 100 consecutive failures is refused (63B §3.2.2)."""
    assert LimitPolicy().checked() == LimitPolicy()
    assert LimitPolicy(max_failures=MAX_FAILURES_CEILING).checked()
    with pytest.raises(ConfigError, match=r"^OTP_LIMIT_MAX_FAILURES must be between 1 and 100$"):
        LimitPolicy(max_failures=101).checked()


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("lockout_seconds", 0, "OTP_LIMIT_LOCKOUT_SECONDS"),
        ("credential_sends", 0, "OTP_LIMIT_CREDENTIAL_SENDS"),
        ("address_window_seconds", 8 * 86400, "OTP_LIMIT_ADDRESS_WINDOW_SECONDS"),
        ("prefix_digits", 16, "OTP_SMS_PREFIX_DIGITS"),
        ("channel_sends_per_hour", {"email": 5}, "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR"),
        ("channel_sends_per_hour", {"*": 0}, "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR"),
        ("sms_allowlist", ("ZZ",), "OTP_SMS_ALLOWLIST"),
        ("sms_denylist", ("44",), "OTP_SMS_DENYLIST"),
    ],
)
def test_broken_policies_name_their_variable(field: str, value: object, variable: str) -> None:
    """Each broken invariant raises one line that names the variable to fix."""
    changes: dict[str, Any] = {field: value}
    broken = dataclasses.replace(LimitPolicy(), **changes)
    with pytest.raises(ConfigError, match=f"^{variable} "):
        broken.checked()


def test_overrides_replace_numbers_merge_budgets_and_replace_lists() -> None:
    """Environment overrides change only what they set; channel budgets merge."""
    policy = LimitPolicy(sms_denylist=("+882",)).with_overrides(
        LimitOverrides(
            numbers={"credential_sends": 2},
            channel_sends_per_hour={"phone": 9},
            sms_allowlist=("GB",),
        )
    )
    assert policy.credential_sends == 2
    assert policy.address_requests == LimitPolicy().address_requests
    assert dict(policy.channel_sends_per_hour) == {"email": 5000, "phone": 9, "*": 1000}
    assert policy.sms_allowlist == ("GB",)
    assert policy.sms_denylist == ("+882",)


def test_destination_lists_parse_regions_and_prefixes() -> None:
    """Region codes are upper-cased and checked; prefixes need a + and digits."""
    assert parse_destinations(" gb, +4479 ,US,") == ("GB", "+4479", "US")
    for bad in ("XX", "+44a", "44", "+", "United Kingdom"):
        with pytest.raises(ValueError, match="region codes"):
            parse_destinations(bad)


def test_the_allow_list_admits_only_listed_countries() -> None:
    """With an allow-list, numbers elsewhere are refused; emails are never affected."""
    policy = LimitPolicy(sms_allowlist=("CA",))
    assert not destination_allowed(PHONE, policy)
    assert destination_allowed(Credential("phone", "+16135550100"), policy)
    assert destination_allowed(EMAIL, policy)


def test_the_deny_list_wins_and_takes_prefixes() -> None:
    """A denied prefix is refused even inside an allowed country."""
    policy = LimitPolicy(sms_allowlist=("US",), sms_denylist=("+1415",))
    assert not destination_allowed(PHONE, policy)
    assert destination_allowed(Credential("phone", "+12125550100"), policy)
    assert not destination_allowed(Credential("phone", "+33612345678"), policy)


def test_no_lists_allow_every_number() -> None:
    """The default has no lists and lets every valid number through."""
    assert destination_allowed(Credential("phone", "+33612345678"), LimitPolicy())


def test_phone_prefixes_are_the_leading_digits() -> None:
    """The prefix is `+` and the first N digits; non-E.164 addresses have none."""
    assert phone_prefix("+14155550100", 6) == "+141555"
    assert phone_prefix("+14155550100", 15) == "+14155550100"
    assert phone_prefix("ada@example.com", 6) is None
    assert phone_prefix("+1415x", 6) is None
