"""The store-outage record: two lines per outage, whatever the number of failed calls."""

from __future__ import annotations

import pytest

from otpserver.observability.outage import StoreCalls
from tests.support.fakes import FakeClock
from tests.support.hygiene import captured_records


def test_an_outage_is_one_start_line_and_one_end_line() -> None:
    """Many failed calls and refused requests make one start line with the first error and
    one end line with the duration and the number refused; calls while up log nothing."""
    clock = FakeClock()
    calls = StoreCalls(clock)
    with captured_records() as records:
        calls.answered(0.001)
        calls.refused()  # a 503 for another reason while up is not an outage's
        calls.failed(ConnectionRefusedError(111, "Connection refused"), 0.002)
        for _ in range(49):
            calls.failed(TimeoutError(), 0.25)
            calls.refused()
        calls.refused()
        assert calls.down
        clock.advance(12.5)
        calls.answered(0.001)
        calls.answered(0.001)
    assert not calls.down
    plain = [line for line in records.lines if not line.startswith("{")]
    started = [line for line in plain if "store unavailable:" in line]
    ended = [line for line in plain if "store available again" in line]
    assert started == [
        "ERROR otpserver.store: store unavailable: ConnectionRefusedError: "
        "[Errno 111] Connection refused; answering 503 until it is back"
    ]
    assert ended == [
        "WARNING otpserver.store: store available again after 12.5 s; "
        "50 request(s) refused meanwhile"
    ]
    assert calls.last_error == "TimeoutError"


async def test_timed_reports_answers_and_failures_but_not_cancellations() -> None:
    """`timed` passes results and errors through, marking the store down on an error and up
    on the next answer; a cancelled call leaves the record as it was."""
    calls = StoreCalls(FakeClock())

    async def answer() -> int:
        return 7

    async def fail() -> int:
        raise OSError("reset by peer")

    assert await calls.timed(answer()) == 7
    with pytest.raises(OSError, match="reset"):
        await calls.timed(fail())
    assert calls.down
    assert await calls.timed(answer()) == 7
    assert not calls.down
