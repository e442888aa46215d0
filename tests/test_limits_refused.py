"""Refused requests are metered too: an invalid credential counts against its address, and an
address over its allowance is refused before any costly validation (SECURITY.md item 51)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from pydantic import model_validator

from otpserver.limits.refusals import RefusalMemo
from tests.conftest import AppFactory
from tests.support.fakes import RecordingSender
from tests.support.hooks import HOOKS, EmailOrPhone
from tests.support.peers import Peers, address
from tests.test_limits_api import assert_rate_limited, limits

LONG_INVALID = "\u00e9" * 70 + "@" + "\u00e4" * 60 + ".example"
"""An internationalised address the validator refuses only after its full, costly work."""


class CountedBody(EmailOrPhone):
    """The tests' credential schema, counting how many bodies it was asked to validate."""

    validations: ClassVar[int] = 0

    @model_validator(mode="before")
    @classmethod
    def count(cls, data: Any) -> Any:
        CountedBody.validations += 1
        return data


async def test_invalid_credentials_count_against_the_address(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Refused creates use up the address's allowance like accepted ones; another address
    is unaffected."""
    app = make_app(store, limit_overrides=limits(address_requests=5))
    client = peers.browser(app, address(1))
    for _ in range(5):
        response = await client.create(LONG_INVALID)
        assert response.status_code == 400
        assert response.json()["error"] == "CREDENTIAL:INVALID"
    assert_rate_limited(await client.create(LONG_INVALID))
    assert_rate_limited(await client.create("ada@example.com"))
    assert sender.sent == []
    assert (await peers.browser(app, address(2)).create("ada@example.com")).status_code == 200


async def test_an_address_over_its_allowance_is_not_validated_again(
    make_app: AppFactory, store: str, peers: Peers
) -> None:
    """Once refused, further creates from that address are answered 429 without running the
    credential schema, so no unmetered request costs more than a normal one."""
    CountedBody.validations = 0
    hooks = dataclasses.replace(HOOKS, credential_body=CountedBody)
    app = make_app(store, hooks, limit_overrides=limits(address_requests=3))
    client = peers.browser(app, address(1))
    statuses = [(await client.create(LONG_INVALID)).status_code for _ in range(50)]
    assert statuses == [400] * 3 + [429] * 47
    assert CountedBody.validations == 4


def test_the_memo_forgets_at_the_instant_and_stays_bounded() -> None:
    """An entry refuses until its instant and not after; past the bound the oldest goes."""
    memo = RefusalMemo(max_entries=2)
    memo.remember("a", 1000)
    assert memo.wait_ms("a", 400) == 600
    assert memo.wait_ms("a", 1000) == 0
    memo.remember("a", 5000)
    memo.remember("b", 5000)
    memo.remember("c", 5000)
    assert len(memo) == 2
    assert memo.wait_ms("a", 0) == 0
    assert memo.wait_ms("c", 0) == 5000
