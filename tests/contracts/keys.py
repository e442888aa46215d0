"""The `KeyStore` contract as a test class to subclass once per backend.

To check a key store of your own, subclass `KeyStoreContract` in a `test_*.py` file under a
name starting with `Test`, and give it a `keys` fixture that yields a fresh, empty store and
`pass_time(seconds)`, which makes `seconds` pass for that store. `tests/test_stores.py`
runs it for memory and Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otpserver.stores.base import KeyStore


class KeyStoreContract:
    """What every `KeyStore` guarantees; not collected itself (no `Test` prefix)."""

    @pytest.fixture
    async def keys(self) -> AsyncIterator[KeyStore]:
        """A fresh, empty store of the backend under test (a subclass provides it)."""
        raise NotImplementedError("subclass KeyStoreContract and define `keys`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    async def pass_time(self, seconds: float) -> None:
        """Make `seconds` pass for the store under test (a subclass provides it)."""
        raise NotImplementedError("subclass KeyStoreContract and define `pass_time`")

    async def test_key_store_keeps_the_first_candidate(self, keys: KeyStore) -> None:
        """Concurrent `get_or_create` calls all return the first stored value."""
        results = await asyncio.gather(
            *(keys.get_or_create(42, bytes([i]) * 40, 600) for i in range(20))
        )
        assert len(set(results)) == 1
        assert await keys.get(42) == results[0]

    async def test_key_store_delete_removes(self, keys: KeyStore) -> None:
        """A deleted key is gone."""
        await keys.get_or_create(7, b"k" * 40, 600)
        await keys.delete(7)
        assert await keys.get(7) is None

    async def test_unknown_keys_read_as_none(self, keys: KeyStore) -> None:
        """`get` of an id never stored is None."""
        assert await keys.get(99) is None

    async def test_keys_expire(self, keys: KeyStore) -> None:
        """A key is gone after its time to live."""
        await keys.get_or_create(1, b"k" * 40, 10)
        await self.pass_time(9)
        assert await keys.get(1) == b"k" * 40
        await self.pass_time(2)
        assert await keys.get(1) is None
