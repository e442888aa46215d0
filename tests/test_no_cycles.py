"""Requests leave no reference cycles behind: every object a request makes is freed by
reference counting when it ends, not later by the cycle collector.

Garbage cycles cost twice under load: the collector runs more often, and each full pass
walks every object the process holds. A refusal raised from a local variable is the usual
culprit (its traceback holds the frame that holds it); these tests send each kind of
answer the API gives and count what the collector would find afterwards.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator

import pytest

from otpserver.http.app import OtpApp
from tests.conftest import AppFactory
from tests.support.api import PRODUCTION_COOKIE
from tests.support.asgi import Origin, post
from tests.support.fakes import RecordingSender

Answer = tuple[int, str | None]


async def call(app: OtpApp, path: str, body: bytes, peer: str, cookie: str | None) -> Answer:
    """One request from `peer` with `cookie`; the status and the cookie it sets, if any."""
    headers = [] if cookie is None else [(b"cookie", f"{PRODUCTION_COOKIE}={cookie}".encode())]
    answer, _ = await post(app, path, body, origin=Origin(client=peer), headers=headers)
    assert answer is not None
    value = answer.cookie(PRODUCTION_COOKIE.encode())
    return answer.status, value.decode() if value else None


async def every_kind_of_answer(app: OtpApp, sender: RecordingSender, round: int) -> list[int]:
    """Successes, refusals and errors of all three routes and of the edge; the statuses.

    Each round comes from its own address for its own credential, so the limits of one
    round never change the answers of the next.
    """
    peer, create = f"192.0.2.{round + 1}", f'{{"email": "cycles{round}@example.com"}}'.encode()
    statuses = []
    status, cookie = await call(app, "/api/otp/create", create, peer, None)
    statuses.append(status)
    for path, body, with_cookie in [
        ("/api/otp/create", create, True),  # the pending credential made current again
        ("/api/otp/resend", b"", True),  # too early: a refusal
        ("/api/otp/verify", b'{"otp": "000000"}', True),  # wrong code
        ("/api/otp/verify", b'{"otp": "000000"}', False),  # no cookie
        ("/api/otp/verify", b'{"otp": "12"}', True),  # malformed code
        ("/api/otp/create", b'{"email": "not an address"}', False),  # schema refusal
        ("/api/otp/create", b"{", False),  # not JSON
        ("/api/otp/create", b"x" * 100_000, False),  # too large
        ("/api/otp/nope", b"{}", False),  # unknown route, through Starlette
    ]:
        status, new_cookie = await call(app, path, body, peer, cookie if with_cookie else None)
        cookie = new_cookie or cookie
        statuses.append(status)
    status, cookie = await call(app, "/api/otp/create", create.replace(b"@", b".ok@"), peer, None)
    correct = f'{{"otp": "{sender.last_code}"}}'.encode()
    status, _ = await call(app, "/api/otp/verify", correct, peer, cookie)  # the final hook
    statuses.append(status)
    return statuses


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cycle collector paused, so whatever cycles a test makes stay to be counted."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cycles_found() -> collections.Counter[str]:
    """What a collection now would free, by type; freed for real before returning, so the
    next count starts from nothing."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    gc.collect()
    return found


async def test_no_answer_leaves_a_reference_cycle(
    make_app: AppFactory, store: str, sender: RecordingSender, collector_off: None
) -> None:
    """Ten rounds of every kind of answer, on each store, leave nothing for the cycle
    collector (the first round opens the Redis connections the others reuse)."""
    app = make_app(store)
    first = await every_kind_of_answer(app, sender, 0)  # warms caches and lazy imports
    assert set(first) == {200, 400, 403, 404, 413, 429}, str(first)
    cycles_found()
    for round in range(1, 11):
        assert await every_kind_of_answer(app, sender, round) == first
    assert cycles_found() == collections.Counter()
