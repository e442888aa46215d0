"""The Redis stores' shared deadline: `asyncio.timeout`'s promises, with one timer for all calls."""

from __future__ import annotations

import asyncio
import time

import pytest

from otpserver.stores.deadlines import TICKS_PER_LIMIT, SharedDeadline

LIMIT = 0.2
LATEST = LIMIT + LIMIT / TICKS_PER_LIMIT + 0.15
"""When a cut-off call must have ended: the limit, one tick, and scheduling slack."""


async def answer_after(seconds: float, value: str = "done") -> str:
    await asyncio.sleep(seconds)
    return value


async def test_a_call_within_the_limit_returns_and_leaves_no_timer() -> None:
    deadline = SharedDeadline(LIMIT)
    assert await deadline.run(answer_after(0.01)) == "done"
    await asyncio.sleep(LIMIT / TICKS_PER_LIMIT * 2)
    assert not deadline.armed  # an idle store wakes nothing up


async def test_a_call_past_the_limit_raises_timeout_error_soon_after_it() -> None:
    deadline = SharedDeadline(LIMIT)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadline.run(answer_after(10))
    assert LIMIT <= time.monotonic() - started < LATEST


async def test_a_cut_off_call_leaves_its_task_free_to_go_on() -> None:
    """The cancellation used to cut the call off is taken back, as `asyncio.timeout` does."""
    deadline = SharedDeadline(LIMIT)
    with pytest.raises(TimeoutError):
        await deadline.run(answer_after(10))
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert await deadline.run(answer_after(0.01, "again")) == "again"


async def test_each_call_is_held_to_its_own_deadline() -> None:
    """Calls that started at different times, some quick and some stuck, on one timer."""
    deadline = SharedDeadline(LIMIT)

    async def later(delay: float, seconds: float) -> str:
        await asyncio.sleep(delay)
        return await deadline.run(answer_after(seconds))

    started = time.monotonic()
    stuck = [asyncio.ensure_future(later(i * LIMIT / 2, 10)) for i in range(3)]
    quick = [asyncio.ensure_future(later(i * LIMIT / 3, LIMIT * 0.8)) for i in range(4)]
    assert await asyncio.gather(*quick) == ["done"] * 4
    for index, call in enumerate(stuck):
        with pytest.raises(TimeoutError):
            await call
        if index == 0:
            assert time.monotonic() - started < LATEST


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadline = SharedDeadline(LIMIT)
    call = asyncio.ensure_future(deadline.run(answer_after(10)))
    await asyncio.sleep(LIMIT / 4)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_one_deadline_serves_one_event_loop_after_another() -> None:
    """Each `asyncio.run` is a new loop: a timer armed on the last one, which closed
    before it fired, must not keep this one's calls from being cut off in time."""
    deadline = SharedDeadline(LIMIT)

    async def cut_off() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(deadline.run(answer_after(10)), LATEST + 1)
        return time.monotonic() - started

    abandoned: list[asyncio.Future[str]] = []

    async def abandon() -> None:
        # A call still in flight when its loop is torn down.
        abandoned.append(asyncio.ensure_future(deadline.run(answer_after(10))))
        await asyncio.sleep(0)

    asyncio.run(abandon())
    assert asyncio.run(cut_off()) < LATEST
    assert asyncio.run(cut_off()) < LATEST


def test_a_deadline_needs_a_task() -> None:
    """Like `asyncio.timeout`, it refuses to run where nothing could be cancelled."""
    deadline = SharedDeadline(LIMIT)
    loop = asyncio.new_event_loop()
    refusals: list[str] = []

    def drive_by_hand() -> None:
        operation = answer_after(0)
        call = deadline.run(operation)
        try:
            call.send(None)
        except RuntimeError as error:
            refusals.append(str(error))
        call.close()
        operation.close()
        loop.stop()

    loop.call_soon(drive_by_hand)
    loop.run_forever()
    loop.close()
    assert refusals == ["a deadline needs a task to cancel"]
