"""The `MarkerStore` contract as a test class to subclass once per backend.

To check a store of your own, subclass `MarkerStoreContract` in a `test_*.py` file under a
name starting with `Test`, and give it two things: a `markers` fixture that yields a fresh,
empty store, and `pass_time(seconds)`, which makes `seconds` pass for that store (move its
injected clock, or shorten every time to live on a server with its own clock). Every test
below then runs against your store; `tests/test_markers.py` does it for memory and Redis.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from otpserver.stores.base import MarkerStore


def new_key() -> bytes:
    """A marker name like the core's: a keyed hash, here random bytes of the same length."""
    return secrets.token_bytes(32)


class MarkerStoreContract:
    """What every `MarkerStore` guarantees; not collected itself (no `Test` prefix)."""

    @pytest.fixture
    async def markers(self) -> AsyncIterator[MarkerStore]:
        """A fresh, empty store of the backend under test (a subclass provides it)."""
        raise NotImplementedError("subclass MarkerStoreContract and define `markers`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    async def pass_time(self, seconds: float) -> None:
        """Make `seconds` pass for the store under test (a subclass provides it)."""
        raise NotImplementedError("subclass MarkerStoreContract and define `pass_time`")

    async def test_put_if_absent_claims_once(self, markers: MarkerStore) -> None:
        """The first claim of a name wins and later ones fail while it lives."""
        key = new_key()
        assert await markers.put_if_absent(key, b"a", 60)
        assert not await markers.put_if_absent(key, b"b", 60)
        assert await markers.get(key) == b"a"

    async def test_a_claim_expires_after_its_time_to_live(self, markers: MarkerStore) -> None:
        """A marker lives for its time to live and not after, then can be claimed again."""
        key = new_key()
        assert await markers.put_if_absent(key, b"a", 60)
        await self.pass_time(59)
        assert await markers.get(key) == b"a"
        assert not await markers.put_if_absent(key, b"b", 60)
        await self.pass_time(2)
        assert await markers.get(key) is None
        assert await markers.put_if_absent(key, b"b", 60)

    async def test_unknown_names_read_as_none(self, markers: MarkerStore) -> None:
        """`get` of a name never written is None."""
        assert await markers.get(new_key()) is None

    async def test_put_replaces_and_restarts_the_time_to_live(self, markers: MarkerStore) -> None:
        """`put` overwrites a live marker, value and lifetime alike."""
        key = new_key()
        await markers.put(key, b"old", 10)
        await self.pass_time(5)
        await markers.put(key, b"new", 10)
        await self.pass_time(8)
        assert await markers.get(key) == b"new"
        await self.pass_time(3)
        assert await markers.get(key) is None

    async def test_delete_removes_a_marker(self, markers: MarkerStore) -> None:
        """A deleted marker is gone and its name can be claimed again; deleting nothing is fine."""
        key = new_key()
        await markers.put(key, b"a", 60)
        await markers.delete(key)
        assert await markers.get(key) is None
        assert await markers.put_if_absent(key, b"b", 60)
        await markers.delete(new_key())

    async def test_advance_only_moves_forward(self, markers: MarkerStore) -> None:
        """`advance` stores a first value, refuses an equal or lower one, and takes a higher."""
        key = new_key()
        assert await markers.advance(key, 100, 60)
        assert not await markers.advance(key, 100, 60)
        assert not await markers.advance(key, 99, 60)
        assert await markers.advance(key, 101, 60)
        assert await markers.get(key) == b"101"

    async def test_advance_restarts_the_time_to_live(self, markers: MarkerStore) -> None:
        """Each stored value lives its own time to live from when it was stored."""
        key = new_key()
        assert await markers.advance(key, 1, 10)
        await self.pass_time(8)
        assert await markers.advance(key, 2, 10)
        await self.pass_time(8)
        assert await markers.get(key) == b"2"
        assert not await markers.advance(key, 2, 10)

    async def test_an_expired_advance_marker_accepts_any_value(self, markers: MarkerStore) -> None:
        """Once a value has expired, a lower one is stored as if nothing was there."""
        key = new_key()
        assert await markers.advance(key, 50, 10)
        await self.pass_time(11)
        assert await markers.advance(key, 1, 10)

    async def test_advance_handles_large_values(self, markers: MarkerStore) -> None:
        """Millisecond timestamps and beyond compare exactly (no float rounding below 2^53)."""
        key = new_key()
        big = 2**52
        assert await markers.advance(key, big, 60)
        assert not await markers.advance(key, big, 60)
        assert await markers.advance(key, big + 1, 60)
        assert await markers.get(key) == str(big + 1).encode()

    async def test_advance_never_overwrites_a_non_integer(self, markers: MarkerStore) -> None:
        """A marker `put` wrote that is not an integer is never advanced over."""
        key = new_key()
        await markers.put(key, b"revoked", 60)
        assert not await markers.advance(key, 10**9, 60)
        assert await markers.get(key) == b"revoked"

    async def test_names_are_binary_safe(self, markers: MarkerStore) -> None:
        """Names differing only in bytes that text would mangle are distinct markers."""
        first, second = b"\x00\xff\r\n" + b"a" * 28, b"\x00\xff\r\n" + b"b" * 28
        assert await markers.put_if_absent(first, b"\x00\x01", 60)
        assert await markers.put_if_absent(second, b"\x02", 60)
        assert await markers.get(first) == b"\x00\x01"
        assert await markers.get(second) == b"\x02"

    async def test_parallel_claims_have_one_winner(self, markers: MarkerStore) -> None:
        """Of 20 concurrent claims of one name exactly one succeeds."""
        key = new_key()
        won = await asyncio.gather(*(markers.put_if_absent(key, b"x", 60) for _ in range(20)))
        assert won.count(True) == 1

    async def test_parallel_advances_to_one_value_have_one_winner(
        self, markers: MarkerStore
    ) -> None:
        """Of 20 concurrent advances to the same value exactly one stores it."""
        key = new_key()
        won = await asyncio.gather(*(markers.advance(key, 7, 60) for _ in range(20)))
        assert won.count(True) == 1
