"""Message templates: language choice, the shipped translations, and checks made at load."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from otpserver.delivery import DEFAULT_TEMPLATES_DIR, Templates
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.errors import ConfigError
from otpserver.otp.credentials import Credential

SHIPPED = ("de", "en", "es", "fr")
# The "do not share" line of each shipped language, as a user reads it.
DO_NOT_SHARE = {
    "en": "Do not share",
    "es": "No compartas",
    "fr": "Ne communiquez ce code à personne",
    "de": "an niemanden weiter",
}


def outgoing(
    *,
    channel: str = "email",
    code: str = "123456",
    ttl_seconds: int = 300,
    origin_host: str = "login.example.com",
    locale: str | None = None,
    accept_language: str | None = None,
) -> OutgoingCode:
    """A message to render, with every field settable."""
    address = "user@example.com" if channel == "email" else "+14155550100"
    return OutgoingCode(
        credential=Credential(channel, address),
        code=code,
        ttl_seconds=ttl_seconds,
        origin_host=origin_host,
        locale=locale,
        accept_language=accept_language,
    )


@pytest.fixture(scope="module")
def templates() -> Templates:
    """The shipped templates, loaded once."""
    return Templates.load()


def copy_language(root: Path, language: str, source: str = "en") -> Path:
    """A copy of a shipped language folder under `root`, named `language`."""
    folder = root / language
    shutil.copytree(DEFAULT_TEMPLATES_DIR / source, folder)
    return folder


def test_shipped_languages(templates: Templates) -> None:
    """English, Spanish, French and German ship, and English is the default."""
    assert set(SHIPPED) <= set(templates.languages)
    assert templates.default_language == "en"


@pytest.mark.parametrize("language", SHIPPED)
def test_every_shipped_email_renders(templates: Templates, language: str) -> None:
    """Each language's email carries the code in the subject and alone on a line, plus the rest."""
    email = templates.email(outgoing(locale=language, ttl_seconds=300))
    assert email.language == language
    assert "123456" in email.subject
    assert "\n" not in email.subject
    assert "123456" in email.text.splitlines()
    for body in (email.text, email.html):
        assert "login.example.com" in body
        assert " 5 " in body
        assert "$" not in body
    assert DO_NOT_SHARE[language] in email.text
    assert html.escape(DO_NOT_SHARE[language]) in email.html
    assert f'<html lang="{language}">' in email.html
    if language != "en":
        assert email.text != templates.email(outgoing(locale="en")).text


@pytest.mark.parametrize("language", SHIPPED)
def test_every_shipped_sms_renders(templates: Templates, language: str) -> None:
    """Each language's SMS has the code, minutes and warning, and ends with the autofill line."""
    sms = templates.sms(outgoing(channel="phone", locale=language, ttl_seconds=600))
    lines = sms.text.splitlines()
    assert sms.language == language
    assert lines[-1] == "@login.example.com #123456"
    assert "123456" in lines[0]
    assert "10" in lines[0]
    assert DO_NOT_SHARE[language].split()[-1] in lines[0]


@pytest.mark.parametrize(("ttl_seconds", "minutes"), [(30, "1"), (60, "1"), (61, "2"), (600, "10")])
def test_minutes_round_up(templates: Templates, ttl_seconds: int, minutes: str) -> None:
    """The lifetime shown is whole minutes, rounded up, and never zero."""
    text = templates.email(outgoing(ttl_seconds=ttl_seconds)).text
    assert f"expires in {minutes} min." in text


@pytest.mark.parametrize(
    ("locale", "accept_language", "expected"),
    [
        ("fr", None, "fr"),
        ("fr-CA", None, "fr"),
        ("fr_CA", "de", "fr"),
        ("DE", None, "de"),
        ("ja", "es", "es"),
        ("not a tag!", "de", "de"),
        (None, "en;q=0.5, fr;q=0.9, de;q=0.7", "fr"),
        (None, "da, en-GB;q=0.8, en;q=0.7", "en"),
        (None, "fr;q=0, de;q=0.1", "de"),
        (None, "fr;q=abc, de;q=0.2", "de"),
        (None, "fr;q=1.5, es;q=0.2", "es"),
        (None, "es, fr", "es"),
        (None, "ja, *;q=0.5", "en"),
        (None, "ja, zh-Hant-TW", "en"),
        (None, "", "en"),
        (None, None, "en"),
        (None, ";;;,,=,q=", "en"),
    ],
)
def test_language_choice(
    templates: Templates, locale: str | None, accept_language: str | None, expected: str
) -> None:
    """Explicit locale first, then the best-weighted Accept-Language match, then the default."""
    assert templates.choose_language(locale, accept_language) == expected


def test_long_accept_language_is_bounded(templates: Templates) -> None:
    """Only the first entries of a huge Accept-Language header are considered."""
    header = ", ".join(["ja"] * 10_000 + ["fr"])
    assert templates.choose_language(None, header) == "en"


def test_most_specific_folder_wins(tmp_path: Path) -> None:
    """A regional folder is used for its region, and the language folder for the others."""
    copy_language(tmp_path, "en")
    copy_language(tmp_path, "pt", source="es")
    regional = copy_language(tmp_path, "pt-BR", source="fr")
    (regional / "email_subject.txt").write_text("$code regional\n", encoding="utf-8")
    templates = Templates.load(tmp_path)
    assert templates.choose_language("pt-BR", None) == "pt-br"
    assert templates.choose_language("pt-PT", None) == "pt"
    assert templates.choose_language(None, "pt-br;q=0.9, en;q=0.8") == "pt-br"
    assert templates.email(outgoing(locale="pt-br")).subject == "123456 regional"


def test_default_locale_falls_back_to_its_language() -> None:
    """`OTP_DEFAULT_LOCALE=fr-CA` makes French the default when there is no fr-ca folder."""
    templates = Templates.load(default_locale="fr-CA")
    assert templates.default_language == "fr"
    assert templates.choose_language(None, "ja") == "fr"


def test_autofill_domain_overrides_the_request_host() -> None:
    """`OTP_AUTOFILL_DOMAIN` replaces the request's host in every message."""
    templates = Templates.load(autofill_domain="example.org")
    sms = templates.sms(outgoing(channel="phone", origin_host="localhost"))
    email = templates.email(outgoing(origin_host="localhost"))
    assert sms.text.splitlines()[-1] == "@example.org #123456"
    assert "example.org" in email.text
    assert "localhost" not in sms.text + email.text + email.html


@pytest.mark.parametrize(
    "origin_host", ["evil.example/<b>", "example.com\r\nBcc: x", "", "Example.com", "a..b"]
)
def test_request_host_that_is_not_a_host_name_is_refused(
    templates: Templates, origin_host: str
) -> None:
    """Only a plain lower-case host name from the request may reach a message."""
    with pytest.raises(DeliveryError, match="OTP_AUTOFILL_DOMAIN"):
        templates.sms(outgoing(channel="phone", origin_host=origin_host))


def test_values_are_escaped_in_html_only(templates: Templates) -> None:
    """A code with HTML characters is escaped in the HTML body and left as is in the text."""
    email = templates.email(outgoing(code='<b>&"1'))
    assert "&lt;b&gt;&amp;&quot;1" in email.html
    assert "<b>" not in email.html
    assert '<b>&"1' in email.text.splitlines()


def test_templates_are_read_once(tmp_path: Path) -> None:
    """After loading, rendering needs no file: the templates are cached in memory."""
    copy_language(tmp_path, "en")
    templates = Templates.load(tmp_path)
    shutil.rmtree(tmp_path / "en")
    assert templates.sms(outgoing(channel="phone")).text.endswith("#123456")


def test_hidden_folders_and_files_are_ignored(tmp_path: Path) -> None:
    """Dot folders and stray files beside the language folders are not languages."""
    copy_language(tmp_path, "en")
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.txt").write_text("notes", encoding="utf-8")
    assert Templates.load(tmp_path).languages == ("en",)


@pytest.mark.parametrize(
    ("file", "content", "complaint"),
    [
        ("email.txt", None, "email.txt is missing"),
        ("sms.txt", None, "sms.txt is missing"),
        ("email.html", "$code $name", "may only use"),
        ("email.txt", "$code costs $5", "may only use"),
        ("email.txt", "no code here", "must contain $code"),
        ("email_subject.txt", "$code\nsecond line", "single line"),
        ("sms.txt", "$code is your code", "must end with the line @$domain #$code"),
        ("sms.txt", "@$domain #$code\n$code", "must end with the line @$domain #$code"),
        ("sms.txt", b"\xff$code\n@$domain #$code", "UTF-8"),
        ("link_page.json", None, "link_page.json is missing"),
        ("link_page.json", "{", "not valid JSON"),
        ("link_page.json", '{"confirm_title": "Confirm"}', "missing ['approved_next'"),
    ],
)
def test_broken_language_folder_fails_at_load(
    tmp_path: Path, file: str, content: str | bytes | None, complaint: str
) -> None:
    """A missing, unreadable or malformed template stops start-up naming the file."""
    folder = copy_language(tmp_path, "en")
    if content is None:
        (folder / file).unlink()
    elif isinstance(content, bytes):
        (folder / file).write_bytes(content)
    else:
        (folder / file).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(complaint)) as caught:
        Templates.load(tmp_path)
    assert file in str(caught.value)


def test_dollar_sign_can_be_written(tmp_path: Path) -> None:
    """`$$` in a template renders one dollar sign."""
    folder = copy_language(tmp_path, "en")
    (folder / "email.txt").write_text("$code costs $$0\n", encoding="utf-8")
    assert Templates.load(tmp_path).email(outgoing()).text == "123456 costs $0\n"


def test_default_locale_without_folder_fails_at_load() -> None:
    """A default language that has no templates stops start-up naming `OTP_DEFAULT_LOCALE`."""
    with pytest.raises(ConfigError, match="OTP_DEFAULT_LOCALE=ja"):
        Templates.load(default_locale="ja")


def test_bad_folder_name_or_missing_folder_fails_at_load(tmp_path: Path) -> None:
    """A folder not named by a language tag, or no templates folder at all, stops start-up."""
    with pytest.raises(ConfigError, match="does not exist"):
        Templates.load(tmp_path / "missing")
    copy_language(tmp_path, "en")
    copy_language(tmp_path, "english!")
    with pytest.raises(ConfigError, match="not named by a language tag"):
        Templates.load(tmp_path)


@pytest.mark.parametrize("language", SHIPPED)
def test_every_shipped_email_shows_a_link_only_when_given(
    templates: Templates, language: str
) -> None:
    """With a link the text and HTML bodies carry it (escaped in HTML); without, no trace."""
    link = "https://login.example.com/l/AbC_d-9&x"
    plain = templates.email(outgoing(locale=language))
    linked = templates.email(dataclasses.replace(outgoing(locale=language), link=link))
    assert link in linked.text.splitlines()
    assert f'href="{html.escape(link)}"' in linked.html
    for body in (plain.text, plain.html):
        assert "/l/" not in body
        assert "$" not in body
    assert "$" not in linked.text + linked.html


def test_a_link_snippet_must_hold_the_link(tmp_path: Path) -> None:
    """A link snippet without `$link` stops start-up naming the file."""
    folder = copy_language(tmp_path, "en")
    (folder / "email_link.txt").write_text("Sign in: $domain\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape("email_link.txt must contain $link")):
        Templates.load(tmp_path)


def edited_link_page(folder: Path, **changes: object) -> None:
    path = folder / "link_page.json"
    texts = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**texts, **changes}), encoding="utf-8")


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"confirm_text": "Sign in to $site?"}, "confirm_text must use $address and $site"),
        ({"dead_title": "Gone from $site"}, "dead_title must use no placeholder"),
        ({"approved_text": "Approved.\nReally."}, "approved_text must be one line"),
        ({"number_button": 7}, "number_button must be one line"),
        ({"extra": "x"}, "unknown ['extra']"),
    ],
)
def test_link_page_texts_are_checked_at_load(
    tmp_path: Path, changes: dict[str, object], complaint: str
) -> None:
    """Every key, one line each, and the site and the account named where a sign-in is
    approved: whoever approves must see where and as whom."""
    edited_link_page(copy_language(tmp_path, "en"), **changes)
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        Templates.load(tmp_path)


@pytest.mark.parametrize("language", SHIPPED)
def test_every_shipped_language_has_link_pages(templates: Templates, language: str) -> None:
    """Each shipped language names the site and the account, both escaped and in bold."""
    texts = templates.link_page(language)
    assert texts.language == language
    confirm = texts.html("confirm_text", site="shop.example", address="a<b>@example.com")
    assert "<strong>shop.example</strong>" in confirm
    assert "<strong>a&lt;b&gt;@example.com</strong>" in confirm
    assert "$" not in confirm


def test_link_page_texts_are_plain_text(tmp_path: Path) -> None:
    """A text is shown as written, never as markup, and `$$` writes a dollar sign."""
    edited_link_page(copy_language(tmp_path, "en"), approved_next="<b>Done</b> for $$0")
    texts = Templates.load(tmp_path).link_page(None)
    assert texts.html("approved_next") == "&lt;b&gt;Done&lt;/b&gt; for $0"
