"""`python -m examples.twofactor`: serve the example beside a running otpserver.

    OTPSERVER_URL=http://127.0.0.1:8000 OTP_API_KEY=otpk_example_... python -m examples.twofactor

Then open http://127.0.0.1:8001. `OTP_ISSUER` (the server's), `TWOFACTOR_DATABASE`,
`TWOFACTOR_HOST`, `TWOFACTOR_PORT` and `TWOFACTOR_SECURE_COOKIES` are optional.
"""

from __future__ import annotations

import uvicorn

from examples.twofactor.app import create_app
from examples.twofactor.config import Config


def main() -> None:
    config = Config.from_env()
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
