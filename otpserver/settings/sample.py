"""`sample.env`, generated from the documented variable lists so it can never drift.

`python -m otpserver.settings.sample --write` updates the file in the repository root; a test
fails when the committed file differs from what this produces.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from otpserver.settings.delivery import DELIVERY_ENV_VARS
from otpserver.settings.environment import ENV_VARS
from otpserver.settings.store import STORE_ENV_VARS

SAMPLE_ENV_PATH = Path(__file__).parents[2] / "sample.env"


class Documented(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def default(self) -> str: ...
    @property
    def comment(self) -> str: ...


SECTIONS: tuple[tuple[str, Iterable[Documented]], ...] = (
    ("Server, store, keys and policy", ENV_VARS),
    ("Delivery (custom/send.py)", DELIVERY_ENV_VARS),
    ("Redis store", STORE_ENV_VARS),
)


def all_variables() -> list[Documented]:
    """Every variable the server reads, in documentation order."""
    return [var for _, variables in SECTIONS for var in variables]


def render() -> str:
    """The file: one commented line per variable, set to its default (or empty)."""
    lines = [
        "# otpserver configuration. Copy to .env and edit; every variable is optional",
        "# unless its comment says otherwise. Empty means: use the default in the comment.",
    ]
    for title, variables in SECTIONS:
        lines += ["", f"# --- {title} ---"]
        for var in variables:
            lines += [f"# {var.comment}", f"{var.name}={var.default}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        SAMPLE_ENV_PATH.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
