"""Localized message templates: load `custom/templates/<lang>/`, pick a language, render.

Each language folder holds `email_subject.txt`, `email.txt`, `email.html` and `sms.txt`,
written with `string.Template` placeholders: `$code`, `$minutes` (the lifetime, rounded up)
and `$domain` (the site the code is for). Values are HTML-escaped in `email.html`. A forker
adds a language by adding a folder; the folder name is the language tag (`pt`, `pt-br`).

A sign-in link (`OTP_LINKS=true`) is rendered only when the message carries one: the
folder's `email_link.txt` and `email_link.html` (placeholders `$link`, `$minutes`,
`$domain`) fill the `$link_section` placeholder of `email.txt` and `email.html`, which is
empty otherwise. The pages that link opens speak the language of the browser opening it
(Accept-Language): their texts are the folder's `link_page.json`, one plain-text string per
key (`LINK_PAGE_KEYS`), escaped for HTML when shown; `$site` and `$address` stand where the
confirm and approve pages name the site and the account.
Everything is read and checked once at start-up: a missing file, an unknown placeholder or
an SMS without its autofill line is a `ConfigError` then, never a failed send later.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.errors import ConfigError
from otpserver.settings.delivery import HOST_NAME, LANGUAGE_TAG

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "custom" / "templates"
"""The shipped templates, beside the other files a forker edits."""

PLACEHOLDERS = frozenset({"code", "minutes", "domain"})
EMAIL_PLACEHOLDERS = PLACEHOLDERS | {"link_section"}
LINK_PLACEHOLDERS = frozenset({"link", "minutes", "domain"})
AUTOFILL_LINE = "@$domain #$code"
"""Last SMS line: browsers (WebOTP) and phones offer the code only on this domain."""

_FILES = (
    "email_subject.txt",
    "email.txt",
    "email.html",
    "sms.txt",
    "email_link.txt",
    "email_link.html",
)
LINK_PAGE_FILE = "link_page.json"
LINK_PAGE_KEYS = (
    "not_a_link_title",
    "not_a_link_text",
    "dead_title",
    "dead_text",
    "dead_next",
    "confirm_title",
    "confirm_text",
    "confirm_button",
    "refused_title",
    "refused_next",
    "code_title",
    "code_text",
    "code_next",
    "number_title",
    "number_text",
    "number_next",
    "number_label",
    "number_button",
    "number_wrong",
    "approved_title",
    "approved_text",
    "approved_next",
    "ended_title",
    "ended_text",
    "ended_next",
)
"""Every text of the link pages, each required in every language's `link_page.json`."""
NAMING_KEYS = frozenset({"confirm_text", "number_text"})
"""Texts that must name the site and the account (`$site`, `$address`): whoever approves a
sign-in sees where and as whom. No other text takes a placeholder."""
# Accept-Language is client input: look at a bounded number of entries only.
_MAX_ACCEPT_LANGUAGE_ITEMS = 20


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One email, ready for MIME: a one-line subject and two bodies."""

    language: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class RenderedText:
    """One text message whose last line is the autofill line."""

    language: str
    text: str


@dataclass(frozen=True, slots=True)
class LanguageTemplates:
    """The checked templates of one language."""

    email_subject: Template
    email_text: Template
    email_html: Template
    sms: Template
    link_text: Template
    link_html: Template
    link_page: Mapping[str, Template]
    """`link_page.json`, each text escaped for HTML before its placeholders are filled."""

    @classmethod
    def read(cls, folder: Path) -> LanguageTemplates:
        """Read and check the files of one language folder."""
        texts = {name: _read(folder / name) for name in _FILES}
        subject = texts["email_subject.txt"].strip()
        sms = texts["sms.txt"].rstrip()
        if "\n" in subject or "\r" in subject:
            raise ConfigError(f"{folder / 'email_subject.txt'} must be a single line")
        if sms.splitlines()[-1:] != [AUTOFILL_LINE]:
            raise ConfigError(f"{folder / 'sms.txt'} must end with the line {AUTOFILL_LINE}")
        return cls(
            email_subject=_template(folder / "email_subject.txt", subject),
            email_text=_template(folder / "email.txt", texts["email.txt"], EMAIL_PLACEHOLDERS),
            email_html=_template(folder / "email.html", texts["email.html"], EMAIL_PLACEHOLDERS),
            sms=_template(folder / "sms.txt", sms),
            link_text=_template(
                folder / "email_link.txt", texts["email_link.txt"], LINK_PLACEHOLDERS, "link"
            ),
            link_html=_template(
                folder / "email_link.html", texts["email_link.html"], LINK_PLACEHOLDERS, "link"
            ),
            link_page=_link_page(folder / LINK_PAGE_FILE),
        )


@dataclass(frozen=True, slots=True)
class LinkPageTexts:
    """The link pages' texts in one language, as HTML."""

    language: str
    texts: Mapping[str, Template]

    def html(self, key: str, **named: str) -> str:
        """The text under `key`; `named` values (the site, the address) escaped and set in
        bold where their placeholders stand."""
        bold = {name: f"<strong>{html.escape(value)}</strong>" for name, value in named.items()}
        return self.texts[key].substitute(bold)


class Templates:
    """All languages, the default one, and the domain override for the autofill line.

    `default_locale` is matched like a request's locale: `fr-CA` falls back to `fr`.
    """

    def __init__(
        self,
        languages: Mapping[str, LanguageTemplates],
        *,
        default_locale: str = "en",
        autofill_domain: str | None = None,
    ) -> None:
        self._languages = dict(languages)
        default = self._match(default_locale)
        if default is None:
            raise ConfigError(
                f"OTP_DEFAULT_LOCALE={default_locale} has no templates "
                f"(available: {', '.join(sorted(languages))})"
            )
        self.default_language = default
        self._autofill_domain = autofill_domain

    @classmethod
    def load(
        cls,
        directory: Path = DEFAULT_TEMPLATES_DIR,
        *,
        default_locale: str = "en",
        autofill_domain: str | None = None,
    ) -> Templates:
        """Read every language folder under `directory`; `ConfigError` if any is incomplete."""
        if not directory.is_dir():
            raise ConfigError(f"the templates folder {directory} does not exist")
        languages: dict[str, LanguageTemplates] = {}
        for folder in sorted(directory.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            if not LANGUAGE_TAG.fullmatch(folder.name):
                raise ConfigError(f"the templates folder {folder} is not named by a language tag")
            languages[_normalize(folder.name)] = LanguageTemplates.read(folder)
        return cls(languages, default_locale=default_locale, autofill_domain=autofill_domain)

    @property
    def languages(self) -> tuple[str, ...]:
        """The available language tags, sorted."""
        return tuple(sorted(self._languages))

    def choose_language(self, locale: str | None, accept_language: str | None) -> str:
        """The explicit locale if available, else the best Accept-Language match, else default.

        `fr-CA` uses a `fr-ca` folder when there is one and `fr` otherwise.
        """
        if locale is not None and LANGUAGE_TAG.fullmatch(locale):
            found = self._match(locale)
            if found is not None:
                return found
        for tag in _accept_language_tags(accept_language or ""):
            found = self.default_language if tag == "*" else self._match(tag)
            if found is not None:
                return found
        return self.default_language

    def link_page(self, accept_language: str | None) -> LinkPageTexts:
        """The link pages' texts in the best language for the browser opening the link."""
        language = self.choose_language(None, accept_language)
        return LinkPageTexts(language, self._languages[language].link_page)

    def email(self, message: OutgoingCode) -> RenderedEmail:
        """The subject and both bodies of the email carrying `message.code`."""
        language = self.choose_language(message.locale, message.accept_language)
        chosen = self._languages[language]
        values = self._values(message)
        escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
        link_text = link_html = ""
        if message.link is not None:
            link_text = chosen.link_text.substitute(values, link=message.link)
            link_html = chosen.link_html.substitute(
                escaped, link=html.escape(message.link, quote=True)
            )
        return RenderedEmail(
            language=language,
            subject=chosen.email_subject.substitute(values),
            text=chosen.email_text.substitute(values, link_section=link_text),
            html=chosen.email_html.substitute(escaped, link_section=link_html),
        )

    def sms(self, message: OutgoingCode) -> RenderedText:
        """The text message carrying `message.code`, ending with the autofill line."""
        language = self.choose_language(message.locale, message.accept_language)
        text = self._languages[language].sms.substitute(self._values(message))
        return RenderedText(language=language, text=text)

    def _match(self, tag: str) -> str | None:
        """The most specific available language for `tag`, dropping subtags from the right."""
        parts = _normalize(tag).split("-")
        for end in range(len(parts), 0, -1):
            candidate = "-".join(parts[:end])
            if candidate in self._languages:
                return candidate
        return None

    def _values(self, message: OutgoingCode) -> dict[str, str]:
        """The placeholder values for one message."""
        return {
            "code": message.code,
            "minutes": str(max(1, math.ceil(message.ttl_seconds / 60))),
            "domain": self._domain(message.origin_host),
        }

    def _domain(self, origin_host: str) -> str:
        """The configured autofill domain, else the host name the request used."""
        if self._autofill_domain is not None:
            return self._autofill_domain
        # The host comes from the request: only a plain host name may reach a message.
        if not HOST_NAME.fullmatch(origin_host):
            raise DeliveryError("the request's host is not a host name; set OTP_AUTOFILL_DOMAIN")
        return origin_host


def _accept_language_tags(header: str) -> list[str]:
    """The tags of an Accept-Language header, best first (stable for equal weights).

    `q=0` means "not acceptable", and entries with a malformed weight are skipped.
    """
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:_MAX_ACCEPT_LANGUAGE_ITEMS]):
        tag, *params = (part.strip() for part in item.split(";"))
        weight: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                weight = _weight(value.strip())
        if weight and (tag == "*" or LANGUAGE_TAG.fullmatch(tag)):
            weighted.append((-weight, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _weight(value: str) -> float | None:
    """An RFC 9110 qvalue (0 to 1, at most three decimals), or None when malformed."""
    if len(value) > 5 or not value.replace(".", "", 1).isdigit() or not value.isascii():
        return None
    weight = float(value)
    return weight if 0 <= weight <= 1 else None


def _normalize(tag: str) -> str:
    """Lower case with hyphens: `fr_CA` and `fr-CA` name the same folder `fr-ca`."""
    return tag.replace("_", "-").lower()


def _read(path: Path) -> str:
    """A template file's UTF-8 text, or a `ConfigError` naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the template {path} is missing")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the template {path} cannot be read as UTF-8 ({exc.__class__.__name__})")


def _link_page(path: Path) -> Mapping[str, Template]:
    """A checked `link_page.json`: an object holding exactly `LINK_PAGE_KEYS`, each a
    one-line string whose placeholders are `$site` and `$address` where `NAMING_KEYS` says
    and none elsewhere; `ConfigError` naming the file and the key otherwise."""
    try:
        data = json.loads(_read(path))
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None
    required = set(LINK_PAGE_KEYS)
    if not isinstance(data, dict) or set(data) != required:
        keys = set(data) if isinstance(data, dict) else set()
        missing, unknown = sorted(required - keys), sorted(keys - required)
        raise ConfigError(
            f"{path} must hold exactly its keys (missing {missing}, unknown {unknown})"
        )
    texts: dict[str, Template] = {}
    for key in LINK_PAGE_KEYS:
        text = data[key]
        if not isinstance(text, str) or not text.strip() or "\n" in text:
            raise ConfigError(f"{path}: {key} must be one line of text")
        template = Template(html.escape(text, quote=False))
        expected = {"site", "address"} if key in NAMING_KEYS else set()
        if not template.is_valid() or set(template.get_identifiers()) != expected:
            wanted = " and ".join(f"${name}" for name in sorted(expected)) or "no placeholder"
            raise ConfigError(f"{path}: {key} must use {wanted} (write $$ for a dollar sign)")
        texts[key] = template
    return texts


def _template(
    path: Path,
    text: str,
    allowed: frozenset[str] = PLACEHOLDERS,
    *also_required: str,
) -> Template:
    """A checked template: valid `$` syntax, known placeholders only, `$code` present (or,
    for the link snippets, `$link`), and any placeholder in `also_required`."""
    template = Template(text)
    names = set(template.get_identifiers())
    if not template.is_valid() or not names <= allowed:
        listed = ", ".join(f"${name}" for name in sorted(allowed))
        raise ConfigError(f"the template {path} may only use {listed} ($$ for a dollar sign)")
    required = ("code",) if "code" in allowed else ()
    for name in (*required, *also_required):
        if name not in names:
            raise ConfigError(f"the template {path} must contain ${name}")
    return template
