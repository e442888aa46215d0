"""What the key commands print: `apikey new` and `keys status` (the command tree is `cli`).

Nothing here prints a secret: master keys appear as fingerprints (HKDF outputs that reveal
nothing), KEKs as their epochs, signing keys as their public key ids. A new API key is
printed once, by the command that makes it, and kept nowhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from otpserver.crypto.atrest import master_key_fingerprint
from otpserver.crypto.keyring import KeyRing
from otpserver.results.signer import ResultSigner
from otpserver.settings.api import ApiSettings
from otpserver.v1.keys import new_key


def new_key_lines(key_id: str, scopes: Iterable[str]) -> list[str]:
    """The lines `apikey new` prints: the key (once) and the `OTP_API_KEYS` entry to add."""
    key, entry = new_key(key_id, scopes)
    return [
        f"API key (shown once; give it to the client, store it nowhere else): {key}",
        f"Add to OTP_API_KEYS (comma-separated; keep the old entry of {key_id} until its "
        f"client has switched): {entry}",
    ]


def _when(instant: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))


async def ring_status(
    master_key: bytes, api: ApiSettings, keyring: KeyRing, signer: ResultSigner, now: float
) -> list[str]:
    """The key ring as `keys status` prints it."""
    current = master_key_fingerprint(master_key)
    previous = [master_key_fingerprint(key) for key in api.previous_master_keys]
    lines = [
        f"master key: {current.hex()} (OTP_MASTER_KEY)",
        "previous master keys: "
        + (", ".join(p.hex() for p in previous) if previous else "none (OTP_MASTER_KEY_PREVIOUS)"),
        "key-encryption keys in the store (epoch: who opens it):",
    ]
    sealing = keyring.epoch(now)
    inventory = await keyring.inventory(now)
    for epoch, opener in inventory:
        if opener is None:
            who = "no configured master key (cookies sealed with it are lost)"
        else:
            who = "OTP_MASTER_KEY" if opener == current else f"previous key {opener.hex()}"
        mark = " (current epoch)" if epoch == sealing else ""
        lines.append(f"  {epoch}{mark}: {who}; retires {_when(keyring.retire_at(epoch))}")
    if not inventory:
        lines.append("  none yet (the first code sent makes one)")
    source = "OTP_SIGNING_SEED" if api.signing_seed is not None else "OTP_MASTER_KEY"
    lines.append(
        f"result-signing keys (derived from {source}, one per "
        f"{signer.keys.period_seconds} s; JWKS kid):"
    )
    current_period = signer.keys.period(now)
    names = {
        current_period - 1: "previous",
        current_period: "signs now",
        current_period + 1: "next",
    }
    for from_current, period, kid in signer.keys.published(now):
        role = names[period] if from_current else "from a previous master key"
        lines.append(f"  {kid} (period {period}, {role})")
    return lines
