"""Addresses as abuse sees them: encoded words refused at validation, and equivalent
spellings of one mailbox sharing its limits (SECURITY.md items 48 and 53)."""

from __future__ import annotations

import pytest

from otpserver.limits.rules import credential_keys
from otpserver.otp.addresses import canonical_mailbox, normalize_email
from otpserver.otp.credentials import Credential
from tests.conftest import AppFactory
from tests.support.fakes import RecordingSender
from tests.support.peers import Peers, address
from tests.test_limits_api import assert_rate_limited


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?=0d=0asubject=3a_win?=@example.com",
        "=?UTF-8?B?DQpCY2M6IGV2ZUBleGFtcGxlLmNvbQ==?=@example.com",
        "x=?iso-8859-1?q?=0a?=y@example.com",
        "=?utf-8?q?=C3=A9?=@ex\u00e4mple.com",
    ],
)
def test_a_local_part_with_an_encoded_word_is_refused(value: str) -> None:
    """`=?` in a local part (the start of an RFC 2047 encoded word) fails validation, though
    both characters are legal in a dot-atom and the validator alone accepts it."""
    with pytest.raises(ValueError, match="encoded word"):
        normalize_email(value)


def test_equals_and_question_marks_apart_are_still_addresses() -> None:
    """Only the pair is refused: `=` or `?` alone in a local part stays valid."""
    assert normalize_email("a=b@example.com") == "a=b@example.com"
    assert normalize_email("who?@example.com") == "who?@example.com"


async def test_the_api_refuses_an_encoded_word_address(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """A create for such an address is a 400 `CREDENTIAL:INVALID` and sends nothing."""
    app = make_app(store)
    response = await peers.browser(app, address(1)).create(
        "=?utf-8?q?=0d=0abcc=3a_spy=40evil=2eexample?=@example.com"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "CREDENTIAL:INVALID"
    assert sender.sent == []


@pytest.mark.parametrize(
    ("spelling", "mailbox"),
    [
        ("ada@example.com", "ada@example.com"),
        ("ada+news@example.com", "ada@example.com"),
        ("ada+a+b@example.com", "ada@example.com"),
        ("a.da@example.com", "a.da@example.com"),
        ("a.d.a+x@gmail.com", "ada@gmail.com"),
        ("ada@googlemail.com", "ada@gmail.com"),
        ("+ada@example.com", "+ada@example.com"),
        ("j\u00fcrgen+x@b\u00fccher.example", "j\u00fcrgen@b\u00fccher.example"),
    ],
)
def test_the_canonical_mailbox_sees_through_tags_gmail_dots_and_googlemail(
    spelling: str, mailbox: str
) -> None:
    """`+tags` go everywhere, dots only at Gmail, and googlemail.com is gmail.com."""
    assert canonical_mailbox(spelling) == mailbox


def test_equivalent_spellings_share_their_limit_keys() -> None:
    """The send and failure keys of two spellings of one mailbox are the same."""
    secret = bytes(32)
    one = credential_keys(secret, Credential("email", "a.d.a+1@gmail.com"))
    other = credential_keys(secret, Credential("email", "ada@googlemail.com"))
    assert one == other
    assert one != credential_keys(secret, Credential("email", "bob@gmail.com"))


async def test_spellings_of_one_inbox_share_one_send_allowance(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Five codes reach one Gmail inbox however its address is spelled; each still goes to
    the address as written."""
    app = make_app(store)
    spellings = [
        "ada@gmail.com",
        "a.da@gmail.com",
        "ada+1@gmail.com",
        "ADA@googlemail.com",
        "a.d.a+2@googlemail.com",
    ]
    for i, spelling in enumerate(spellings):
        assert (await peers.browser(app, address(i)).create(spelling)).status_code == 200
    assert_rate_limited(await peers.browser(app, address(9)).create("ad.a+3@gmail.com"))
    assert [m.credential.address for m in sender.sent] == [s.lower() for s in spellings]


@pytest.mark.parametrize("separator", ["\r", "\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"])
def test_every_kind_of_line_break_in_an_address_is_refused(separator: str) -> None:
    """Nothing the email library could write as a line break passes validation."""
    with pytest.raises(ValueError):  # noqa: PT011 -- pydantic reports any ValueError alike
        normalize_email(f"a{separator}b@example.com")
