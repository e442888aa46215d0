"""`python -m otpserver`: check the configuration, then serve with uvicorn."""

from __future__ import annotations

import base64
import logging
import os
import sys

import uvicorn

from otpserver.config import MASTER_KEY_BYTES, Settings
from otpserver.errors import ConfigError


def main() -> int:
    """Start the server, or print one line naming the bad variable and exit with 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        ephemeral = settings.is_development and settings.master_key is None
        if ephemeral:
            # Every worker must seal with the same keys, so the ephemeral key is made once
            # here and inherited through the environment; it is never printed.
            os.environ["OTP_MASTER_KEY"] = (
                base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode()
            )
        # Build once in this process so bad hooks or settings fail before any worker starts.
        from otpserver.asgi import build

        build()
        if ephemeral:
            logging.getLogger("otpserver").warning(
                "development mode: generated an ephemeral OTP_MASTER_KEY; cookies die on restart"
            )
    except ConfigError as error:
        print(f"otpserver: configuration error: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        "otpserver.asgi:build",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
