"""Log hygiene sweeps: find any code, cookie value, key or secret in what the server logged.

SECURITY.md L.44: no log line at any level carries one, except the development sender's
`otp dev-sender: to=<address> code=<code>` line. A sweep gets the logged text (captured
records of an in-process app, or a real process's output) and every secret the test saw.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import redis

from otpserver.crypto import envelope
from otpserver.observability.logs import JsonFormatter
from otpserver.stores.redis import KEY_PREFIX

DEV_SENDER_LINE = re.compile(r"otp dev-sender: to=\S+ code=\S+")


def encodings(raw: bytes) -> list[str]:
    """The ways a binary secret could be printed: hex, base64 and base64url, padded or not."""
    forms = [raw.hex(), raw.hex().upper()]
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms += [text, text.rstrip("=")]
    return [*forms, repr(raw)]


def redis_key_material(url: str, master_key: bytes) -> list[str]:
    """Every KEK in the store (wrapped as stored, and unwrapped) in every printable form."""
    client = redis.Redis.from_url(url)
    try:
        found: list[str] = []
        for key in client.scan_iter(match=KEY_PREFIX + b"*"):
            wrapped = client.get(key)
            if not isinstance(wrapped, bytes):
                continue
            found += encodings(wrapped)
            kek = envelope.unwrap_key(master_key, wrapped)
            if kek is not None:
                found += encodings(kek)
        return found
    finally:
        client.close()


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Lines of `text` that contain a secret, outside the development sender's own line.

    Codes are short digit strings, so they count only as whole words: not inside a longer
    number such as a port, nor inside a random identifier (a hex request id or a base64url
    event id holds any six digits now and then); every other secret counts wherever it
    appears.
    """
    wanted = sorted({s for s in secrets if s}, key=len, reverse=True)
    found = []
    for line in text.splitlines():
        if DEV_SENDER_LINE.fullmatch(line.strip()):
            continue
        for secret in wanted:
            pattern = (
                rf"(?<![0-9A-Za-z_-]){re.escape(secret)}(?![0-9A-Za-z_-])"
                if secret.isdigit()
                else None
            )
            if (pattern and re.search(pattern, line)) or (not pattern and secret in line):
                found.append(f"{secret[:12]}... in: {line[:200]}")
                break
    return found


def assert_no_leaks(text: str, secrets: Iterable[str]) -> None:
    """Fail with the offending lines when `text` carries any of `secrets`."""
    found = leaks(text, secrets)
    assert not found, "secrets in the logs:\n" + "\n".join(found)


class RecordCapture(logging.Handler):
    """Keeps every record at every level, formatted as a log file would show it, tracebacks
    and stack information included."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        # The JSON form carries every field passed in `extra=` (an audit event's, say),
        # which the plain form leaves out; the sweep reads both.
        self._json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(self._json.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def captured_records() -> Iterator[RecordCapture]:
    """Every record any logger emits while the block runs (the root logger at DEBUG)."""
    capture = RecordCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
