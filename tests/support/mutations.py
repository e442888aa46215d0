"""Every way to damage a cookie, as a hypothesis strategy (SECURITY.md D.19)."""

from __future__ import annotations

import base64

from hypothesis import strategies as st

from otpserver.crypto import envelope
from otpserver.encoding import b64url
from otpserver.http.cookies import PURPOSE
from otpserver.verification.sealing import b64decode

OTHER_PURPOSE = b"otpserver/another-purpose/v1"


def cookie_mutations(
    cookie: str, other: str, *, kek: bytes | None = None
) -> st.SearchStrategy[str]:
    """Bit flips, truncation, extension, header swaps with `other`, re-encodings, garbage,
    and (given the real `kek`) the cookie's own payload sealed for another purpose.

    With `kek`, the purpose swap is the strong one: right key id, right KEK, a fresh DEK and
    nonce, the genuine plaintext, and only the purpose wrong.
    """
    blob = b64decode(cookie)
    foreign = b64decode(other)
    key_id = envelope.peek_key_id(blob)

    def flip(position: int, bit: int) -> str:
        data = bytearray(blob)
        data[position % len(data)] ^= 1 << bit
        return b64url(bytes(data))

    def swap(start: int, end: int) -> str:
        return b64url(blob[:start] + foreign[start:end] + blob[end:])

    def with_key_id(value: int) -> str:
        return b64url(blob[:1] + value.to_bytes(4, "big") + blob[5:])

    def resealed(purpose: bytes, seal_kek: bytes) -> str:
        payload = b"\x00" if kek is None else envelope.unseal(blob, purpose=PURPOSE, kek=kek)
        return b64url(envelope.seal(payload, purpose=purpose, key_id=key_id, kek=seal_kek))

    header, nonce_end = envelope.HEADER_BYTES, envelope.HEADER_BYTES + envelope.NONCE_BYTES
    strategies = [
        st.builds(flip, st.integers(0, 10_000), st.integers(0, 7)),
        st.integers(1, len(blob) - 1).map(lambda n: b64url(blob[:n])),
        st.binary(min_size=1, max_size=64).map(lambda extra: b64url(blob + extra)),
        # Version and key id, wrapped DEK, nonce, ciphertext: each swapped for another cookie's.
        st.sampled_from([swap(1, 5), swap(5, header), swap(header, nonce_end)]),
        st.just(swap(nonce_end, len(blob))),
        st.integers(0, 2**32 - 1).map(with_key_id),
        st.integers(2, 255).map(lambda v: b64url(bytes([v]) + blob[1:])),
        st.just(base64.urlsafe_b64encode(blob).decode()),  # padded spelling
        st.just(base64.b64encode(blob).decode()),  # standard alphabet
        st.just(cookie + "A"),
        st.just(cookie[:-1] + ("B" if cookie[-1] != "B" else "C")),
        st.text(max_size=80),
        st.just(resealed(OTHER_PURPOSE, bytes(32))),
    ]
    if kek is not None:
        strategies.append(st.just(resealed(OTHER_PURPOSE, kek)))
    return st.one_of(strategies).filter(lambda mutated: mutated != cookie)


def header_safe(text: str) -> str:
    """`text` reduced to what a Cookie header can carry as one value (no separators)."""
    return "".join(c for c in text if c.isascii() and c.isprintable() and c not in ";, ")
