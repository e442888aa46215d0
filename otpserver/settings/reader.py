"""Reading the environment: documented variables, defaults from one list, every problem at once.

Every module that reads variables declares them as `EnvVar`s (name, default, comment);
`sample.env` and the README's configuration table are generated from those lists, and
`EnvReader` takes its defaults from them, so a default is written exactly once (its value
comes from `otpserver.settings.defaults`).

A bad value is reported, not raised on the spot: `EnvReader` records a one-line problem
naming the variable in a `ConfigProblems` collector and carries on with the documented
default, so one start-up finds every problem. The settings module's `from_env` raises one
`ConfigError` listing them all at the end. A feature's settings module follows the same
pattern:

    def from_env(cls, environ, problems=None):
        with collecting(problems) as found:
            env = EnvReader(environ, FEATURE_ENV_VARS, found)
            ...  # env.integer(...); env.problem(name, f"{name} must ...")
            return cls(...)

and `Settings.from_env` passes its own collector in, so the feature's problems are listed
with everyone else's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from otpserver.errors import ConfigError

Choice = TypeVar("Choice", bound=str)
T = TypeVar("T")

_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One documented environment variable: name, default ("" when none), one-line comment."""

    name: str
    default: str
    comment: str


def overridable(name: str, default: object, comment: str) -> EnvVar:
    """A variable that overrides a value the code sets (`custom/`): unset keeps the code's.

    Its documented default stays empty, and the comment ends with the shipped default,
    written from the value itself so the text cannot drift from it.
    """
    return EnvVar(name, "", f"{comment} (default: {default_text(default)})")


def default_text(value: object) -> str:
    """How a default is written in `sample.env` and the README: `email=5000,*=1000` for a
    mapping, a comma list for a sequence, `str()` for the rest."""
    if isinstance(value, Mapping):
        return ",".join(f"{key}={number}" for key, number in value.items())
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


class ConfigProblems:
    """Collects configuration problems, one line each naming its variable, to raise together."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def add(self, name: str, line: str) -> None:
        """Record `line` (which names `name`) as a problem."""
        self._names.add(name)
        if line not in self._lines:
            self._lines.append(line)

    def has(self, *names: str) -> bool:
        """True when a problem was recorded for any of `names`: checks that combine several
        variables skip a broken one, so each mistake is reported once."""
        return not self._names.isdisjoint(names)

    def read(self, read: Callable[[], T], fallback: T, name: str = "") -> T:
        """`read()`, or `fallback` after recording the `ConfigError` it raised (for code that
        still raises, e.g. a settings module without a `problems` parameter)."""
        try:
            return read()
        except ConfigError as error:
            for line in error.problems:
                self.add(name or line.split(" ", 1)[0], line)
            return fallback

    @property
    def lines(self) -> tuple[str, ...]:
        """The problems so far, in the order found."""
        return tuple(self._lines)

    def raise_if_any(self) -> None:
        """Raise one `ConfigError` listing every problem, if there is any."""
        if self._lines:
            raise ConfigError(*self._lines)


@contextmanager
def collecting(problems: ConfigProblems | None) -> Iterator[ConfigProblems]:
    """The caller's collector, or a new one that raises everything it found on exit."""
    if problems is not None:
        yield problems
        return
    found = ConfigProblems()
    yield found
    found.raise_if_any()


class EnvReader:
    """Typed reads of one environment mapping; an empty value counts as unset.

    With a `ConfigProblems`, a bad value is recorded there (one line naming the variable)
    and the read returns the documented default instead; without one, it raises
    `ConfigError` at once.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        documented: Iterable[EnvVar],
        problems: ConfigProblems | None = None,
    ) -> None:
        self._environ = environ
        self._defaults = {var.name: var.default for var in documented}
        self._problems = problems

    def problem(self, name: str, line: str) -> None:
        """Report a problem with `name`: recorded when collecting, else raised."""
        if self._problems is None:
            raise ConfigError(line)
        self._problems.add(name, line)

    def has_problem(self, *names: str) -> bool:
        """True when a problem with any of `names` was reported already."""
        return self._problems is not None and self._problems.has(*names)

    def is_set(self, name: str) -> bool:
        """True when the environment gives `name` a non-blank value."""
        return bool(self._environ.get(name, "").strip())

    def raw(self, name: str) -> str:
        """The stripped value as given, "" when unset (for values parsed elsewhere)."""
        return self._environ.get(name, "").strip()

    def optional(self, name: str) -> str | None:
        """The stripped value, else the documented default, else None."""
        value = self._environ.get(name, "").strip() or self._defaults[name]
        return value or None

    def required(self, name: str) -> str:
        """The value or its documented default."""
        value = self.optional(name)
        if value is None:
            self.problem(name, f"{name} must not be empty")
            return ""
        return value

    def choice(self, name: str, allowed: tuple[Choice, ...]) -> Choice:
        """One of `allowed`, compared case-insensitively."""
        value = self.required(name).lower()
        for option in allowed:
            if option == value:
                return option
        self.problem(name, f"{name} must be one of: {', '.join(allowed)}")
        default = self._defaults[name].lower()
        return next((option for option in allowed if option == default), allowed[0])

    def integer(self, name: str, minimum: int, maximum: int) -> int:
        """An ASCII decimal integer in [minimum, maximum]."""
        value = self.required(name)
        # int() would also take "+5", "1_0" and non-ASCII digits; only plain digits are meant.
        if value.isascii() and value.isdigit() and minimum <= int(value) <= maximum:
            return int(value)
        self.problem(name, f"{name} must be an integer between {minimum} and {maximum}")
        default = self._defaults[name]
        return int(default) if default.isdigit() else minimum

    def seconds(self, name: str, *, maximum: float) -> float:
        """A positive decimal number of seconds, at most `maximum`."""
        value = self.required(name)
        if _DECIMAL.fullmatch(value) and 0 < float(value) <= maximum:
            return float(value)
        self.problem(name, f"{name} must be a number of seconds above 0 and at most {maximum:g}")
        default = self._defaults[name]
        return float(default) if _DECIMAL.fullmatch(default) else maximum
