"""The development sender: one line per code on stderr, so a developer can copy it.

It is the only place a code is ever written out, and it exists only in development: it is
`development_only`, so the core refuses to start with it in production.
"""

from __future__ import annotations

import sys
from typing import TextIO

from otpserver.delivery.message import OutgoingCode


class ConsoleSender:
    """Prints `otp dev-sender: to=<address> code=<code>` and nothing else."""

    development_only = True

    def __init__(self, stream: TextIO | None = None) -> None:
        # None means "sys.stderr at send time", so a redirected stderr is honoured.
        self._stream = stream

    async def send(self, message: OutgoingCode) -> None:
        """Print the one line; this never fails in a way worth a `DeliveryError`."""
        stream = self._stream or sys.stderr
        # One write for the whole line: stderr is unbuffered, `print` would write the text and
        # the newline separately, and several workers share one stderr, so their lines could
        # interleave mid-line.
        stream.write(f"otp dev-sender: to={message.credential.address} code={message.code}\n")
        stream.flush()
