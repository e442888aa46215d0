"""Random bytes from the OS CSPRNG, fetched in blocks so one system call serves many requests.

A create needs a list ID, a data key and a nonce, and a production code needs a few bytes
more; asking the kernel for each costs a system call apiece, which on a virtual machine
is a real share of a request. `random_bytes` hands out slices of a block read with one
`os.urandom` call instead. The bytes are exactly as unpredictable as the kernel's; what
needs care is that no byte is ever handed out twice:

- a lock makes each slice exclusive, even if a hook draws from a thread;
- a forked child discards the block it inherited, so parent and child never share one;
- each slice is zeroed in the block as it is handed out, so a later dump of the process
  memory does not find keys and nonces that were already used.
"""

from __future__ import annotations

import os
import threading

BLOCK_BYTES = 4096
"""Bytes fetched per system call; larger requests go straight to the kernel."""


class EntropyPool:
    """Slices of OS randomness, each handed out once."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self._block_bytes = block_bytes
        self._lock = threading.Lock()
        self._block = bytearray()
        self._offset = 0

    def take(self, count: int) -> bytes:
        """`count` fresh random bytes."""
        if count > self._block_bytes:
            return os.urandom(count)
        with self._lock:
            start = self._offset
            end = start + count
            if end > len(self._block):
                self._block = bytearray(os.urandom(self._block_bytes))
                start, end = 0, count
            taken = bytes(self._block[start:end])
            self._block[start:end] = bytes(count)
            self._offset = end
            return taken

    def discard(self) -> None:
        """Forget the current block (after a fork, the parent still holds the same bytes)."""
        # No lock: in a freshly forked child only the forking thread exists, and a lock held
        # by another thread at fork time would never be released; a new one replaces it.
        self._lock = threading.Lock()
        self._block = bytearray()
        self._offset = 0


_POOL = EntropyPool()
os.register_at_fork(after_in_child=_POOL.discard)


def random_bytes(count: int) -> bytes:
    """`count` bytes from the OS CSPRNG, never handed out to anyone else."""
    return _POOL.take(count)


def random_below(bound: int, count: int) -> list[int]:
    """`count` integers drawn uniformly from `range(bound)`, for `2 <= bound <= 256`.

    Rejection sampling: a byte at or above the largest multiple of `bound` that fits in a
    byte is thrown away, so every value keeps exactly the same number of byte values.
    """
    if not 2 <= bound <= 256:
        raise ValueError("bound must be between 2 and 256")
    usable = 256 - 256 % bound
    values: list[int] = []
    while len(values) < count:
        # A few spare bytes make a second draw rare even for the worst bound (129).
        for byte in random_bytes(count - len(values) + 4):
            if byte < usable:
                values.append(byte % bound)
                if len(values) == count:
                    break
    return values
