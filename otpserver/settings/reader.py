"""Reading the environment: documented variables, defaults from one list, one-line errors.

Every module that reads variables declares them as `EnvVar`s (name, default, comment);
`sample.env` is generated from those lists, and `EnvReader` takes its defaults from them,
so a default is written exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from otpserver.errors import ConfigError

Choice = TypeVar("Choice", bound=str)

_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One documented environment variable: name, default ("" when none), one-line comment."""

    name: str
    default: str
    comment: str


class EnvReader:
    """Typed reads of one environment mapping; an empty value counts as unset.

    Every refusal is a `ConfigError` whose one line names the variable.
    """

    def __init__(self, environ: Mapping[str, str], documented: Iterable[EnvVar]) -> None:
        self._environ = environ
        self._defaults = {var.name: var.default for var in documented}

    def is_set(self, name: str) -> bool:
        """True when the environment gives `name` a non-blank value."""
        return bool(self._environ.get(name, "").strip())

    def optional(self, name: str) -> str | None:
        """The stripped value, else the documented default, else None."""
        value = self._environ.get(name, "").strip() or self._defaults[name]
        return value or None

    def required(self, name: str) -> str:
        """The value or its documented default."""
        value = self.optional(name)
        if value is None:
            raise ConfigError(f"{name} must not be empty")
        return value

    def choice(self, name: str, allowed: tuple[Choice, ...]) -> Choice:
        """One of `allowed`, compared case-insensitively."""
        value = self.required(name).lower()
        for option in allowed:
            if option == value:
                return option
        raise ConfigError(f"{name} must be one of: {', '.join(allowed)}")

    def integer(self, name: str, minimum: int, maximum: int) -> int:
        """An ASCII decimal integer in [minimum, maximum]."""
        value = self.required(name)
        # int() would also take "+5", "1_0" and non-ASCII digits; only plain digits are meant.
        if not value.isascii() or not value.isdigit() or not minimum <= int(value) <= maximum:
            raise ConfigError(f"{name} must be an integer between {minimum} and {maximum}")
        return int(value)

    def seconds(self, name: str, *, maximum: float) -> float:
        """A positive decimal number of seconds, at most `maximum`."""
        value = self.required(name)
        if not _DECIMAL.fullmatch(value) or not 0 < float(value) <= maximum:
            raise ConfigError(f"{name} must be a number of seconds above 0 and at most {maximum:g}")
        return float(value)
