"""The entropy pool: every byte handed out once, never shared across a fork, uniform draws."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

from otpserver.entropy import BLOCK_BYTES, EntropyPool, random_below, random_bytes


def test_slices_never_repeat_across_refills() -> None:
    """Thousands of 16-byte IDs drawn through several block refills are all distinct."""
    pool = EntropyPool(block_bytes=64)
    drawn = [pool.take(16) for _ in range(5_000)]
    assert all(len(value) == 16 for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_handed_out_bytes_do_not_stay_in_the_block() -> None:
    """A slice is zeroed where it came from, so the pool keeps no copy of a used key."""
    pool = EntropyPool(block_bytes=256)
    taken = pool.take(32)
    assert taken != bytes(32)
    assert taken not in bytes(pool._block)
    assert pool._block[:32] == bytes(32)


def test_requests_larger_than_a_block_are_served_whole() -> None:
    value = random_bytes(BLOCK_BYTES + 1)
    assert len(value) == BLOCK_BYTES + 1
    assert value != random_bytes(BLOCK_BYTES + 1)


def test_threads_never_receive_the_same_bytes() -> None:
    """Draws from many threads at once are exclusive slices (the lock is what ensures it)."""
    pool = EntropyPool(block_bytes=128)
    results: list[list[bytes]] = [[] for _ in range(8)]

    def draw(into: list[bytes]) -> None:
        for _ in range(2_000):
            into.append(pool.take(12))

    threads = [threading.Thread(target=draw, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for bucket in results for value in bucket]
    assert len(set(everything)) == len(everything) == 16_000


def test_a_forked_child_does_not_reuse_the_parents_block() -> None:
    """After a fork, the child's next bytes differ from the parent's next bytes."""
    random_bytes(16)  # make sure a block is loaded before forking
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reader)
        os.write(writer, random_bytes(32))
        os._exit(0)
    os.close(writer)
    parent_next = random_bytes(32)
    child_next = b""
    while len(child_next) < 32:
        chunk = os.read(reader, 32)
        if not chunk:
            break
        child_next += chunk
    os.close(reader)
    os.waitpid(child, 0)
    assert len(child_next) == 32
    assert child_next != parent_next


@pytest.mark.parametrize("bound", [2, 7, 10, 129, 256])
def test_random_below_is_uniform(bound: int) -> None:
    """Chi-square over `bound` values, including 129, which rejects almost half the bytes."""
    draws = 400 * bound
    counts = Counter(random_below(bound, draws))
    assert set(counts) <= set(range(bound))
    expected = draws / bound
    chi_square = sum((counts[value] - expected) ** 2 / expected for value in range(bound))
    # Wilson-Hilferty approximation of the 0.9999 quantile for bound - 1 degrees of freedom.
    dof = bound - 1
    limit = dof * (1 - 2 / (9 * dof) + 3.719 * (2 / (9 * dof)) ** 0.5) ** 3
    assert chi_square < limit


@pytest.mark.parametrize("bound", [0, 1, 257])
def test_random_below_refuses_bounds_it_cannot_serve(bound: int) -> None:
    with pytest.raises(ValueError, match="bound"):
        random_below(bound, 1)
