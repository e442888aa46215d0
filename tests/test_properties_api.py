"""Property-based attacks through the HTTP API (hypothesis), on a real Redis.

- Any mutation of any of several live cookies, sent to any route, is `OTP:INVALID_COOKIE`
  (create: a fresh list) and leaves every byte of the store as it was: no session changes,
  not even the one the cookie was cut from.
- Any text in the `otp` field that is not a well-formed code is a 400 before anything is
  looked up, never a 500, and costs the session nothing.
- Credentials built from every character class are either accepted in a normal form that
  validates again as itself, or refused with `CREDENTIAL:INVALID`; never a 500.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote_plus

import pytest
import redis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from otpserver.otp.addresses import normalize_email, normalize_phone
from otpserver.stores.redis import ID_PREFIX
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT
from tests.support.api import Browser, wrong
from tests.support.hygiene import assert_no_leaks, captured_records, redis_key_material
from tests.support.mutations import cookie_mutations, header_safe
from tests.support.redis_server import RedisServer, external_redis_url
from tests.support.syncapp import SyncApp

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
_WHITESPACE = " \t\r\n\x0b\x0c"
_WELL_FORMED = re.compile(rf"[{_WHITESPACE}]*[0-9]{{6}}[{_WHITESPACE}]*")


@dataclass
class Victim:
    """A browser with a live session, and the code of its current entry."""

    browser: Browser
    code: str
    credential: str


class World:
    """One app on Redis with several live sessions in different states, and a log capture."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = redis.Redis.from_url(url)
        self.app = SyncApp(url)
        self.victims: dict[str, Victim] = {}
        self.extra_codes: dict[str, str] = {}
        self.cookies_seen: list[str] = []
        self.new_session("fresh", "ada@example.com")  # one pending credential, nothing tried yet
        bob = self.new_session("guessed", "bob@example.com")
        self.app.run(bob.browser.verify(wrong(bob.code)))  # one attempt spent
        carol = self.new_session("two-entries", "carol@example.com")
        self.extra_codes["two-entries"] = carol.code
        self.app.run(carol.browser.create("dave@example.com"))
        carol.code, carol.credential = self.app.sender.last_code, "dave@example.com"
        self.new_session("format", "eve@example.com")  # target of the otp-text property
        for victim in self.victims.values():
            self.cookies_seen += victim.browser.history

    def new_session(self, name: str, credential: str) -> Victim:
        browser = self.app.browser()
        response = self.app.run(browser.create(credential))
        assert response.status_code == 200, response.text
        victim = Victim(browser, self.app.sender.last_code, credential)
        self.victims[name] = victim
        return victim

    def cookie(self, name: str) -> str:
        value = self.victims[name].browser.cookie
        assert value is not None
        return value

    def snapshot(self) -> dict[bytes, bytes | None]:
        """Every key in the store with its serialized value."""
        keys = sorted(self.store.scan_iter())
        pipe = self.store.pipeline()
        for key in keys:
            pipe.dump(key)
        return dict(zip(keys, pipe.execute(), strict=True))

    def live_ids(self) -> list[bool]:
        """Whether each victim's single-use ID is still in the store, unconsumed."""
        return [
            bool(self.store.exists(ID_PREFIX + self.app.open(self.cookie(name)).list_id))
            for name in self.victims
        ]

    def close(self) -> None:
        self.app.close()
        self.store.close()


@pytest.fixture(scope="module")
def world(redis_server: RedisServer | None) -> Iterator[World]:
    """The shared sessions, on an emptied Redis; every record logged meanwhile is kept."""
    url = external_redis_url() or (redis_server.url if redis_server else "")
    redis.Redis.from_url(url).flushdb()
    with captured_records() as records:
        shared = World(url)
        yield shared
    try:
        secrets = [*shared.cookies_seen, *(m.code for m in shared.app.sender.sent)]
        secrets += [MASTER_KEY_TEXT, *redis_key_material(url, MASTER_KEY)]
        assert_no_leaks(records.text, secrets)
    finally:
        shared.close()


VICTIMS = ["fresh", "guessed", "two-entries"]
ROUTES = ["verify-right-code", "verify-wrong-code", "resend", "create"]


@FUZZ
@given(data=st.data(), name=st.sampled_from(VICTIMS), route=st.sampled_from(ROUTES))
def test_a_mutated_cookie_is_refused_and_changes_no_session(
    world: World, data: st.DataObject, name: str, route: str
) -> None:
    """Each mutation gets INVALID_COOKIE (create: a fresh list) and the store stays byte-equal."""
    victim = world.victims[name]
    other = world.cookie(data.draw(st.sampled_from([v for v in VICTIMS if v != name])))
    raw = data.draw(cookie_mutations(world.cookie(name), other, kek=world.app.current_kek()))
    mutated = header_safe(raw)
    assume(mutated not in {world.cookie(v) for v in world.victims})
    before, sent = world.snapshot(), len(world.app.sender.sent)
    browser = Browser(world.app.client)
    if route == "create":
        credential = f"attacker{sent}@example.com"
        response = world.app.run(browser.create(credential, cookie=mutated))
        assert response.status_code == 200, response.text
        # Nothing of the damaged cookie carried over: a list of exactly the new credential.
        assert response.json()["pending"] == 1
        assert world.app.open(str(browser.cookie)).entries[0].credential.address == credential
        assert all(world.live_ids())
        world.cookies_seen.append(str(browser.cookie))
        return
    code = victim.code if route == "verify-right-code" else wrong(victim.code)
    action = (
        browser.resend(cookie=mutated)
        if route == "resend"
        else browser.verify(code, cookie=mutated)
    )
    response = world.app.run(action)
    assert response.status_code == 400, (raw, response.text)
    assert response.json()["error"] == "OTP:INVALID_COOKIE"
    assert "set-cookie" not in response.headers
    assert len(world.app.sender.sent) == sent
    assert world.snapshot() == before


def otp_texts() -> st.SearchStrategy[str]:
    """Text an attacker might put in the `otp` field, weighted toward the dangerous kinds."""
    digits_of_other_scripts = st.text(
        st.characters(categories=["Nd", "No", "Nl"], exclude_characters="0123456789"),
        min_size=1,
        max_size=8,
    )
    controls = st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=8)
    near_codes = st.builds(
        lambda code, junk, at: code[:at] + junk + code[at:],
        st.from_regex(r"[0-9]{6}", fullmatch=True),
        st.one_of(controls, digits_of_other_scripts, st.text(min_size=1, max_size=3)),
        st.integers(0, 6),
    )
    long_texts = st.builds(
        lambda unit, times: unit * times,
        st.sampled_from(["0", "\u0663", "\x00", "\n", "1234567", "\U0001d7d9", " ", "\u00e9"]),
        st.integers(7, 6000),
    )
    return st.one_of(
        st.text(st.characters(codec=None, exclude_categories=[]), max_size=40),
        digits_of_other_scripts,
        controls,
        near_codes,
        long_texts,
    )


def verify_body(text: str, encoding: str) -> tuple[bytes, str]:
    """`text` as the `otp` field of a body in the given encoding, exactly as sent on the wire."""
    if encoding == "json":
        # ensure_ascii escapes lone surrogates, so every str has a JSON spelling.
        return json.dumps({"otp": text}).encode(), "application/json"
    if encoding == "form":
        raw = text.encode("utf-8", "surrogatepass")
        return b"otp=" + quote_plus(raw).encode(), "application/x-www-form-urlencoded"
    # A form body whose bytes are not even UTF-8 text.
    return b"otp=" + text.encode("utf-16-le", "surrogatepass"), "application/x-www-form-urlencoded"


@FUZZ
@example(text="\u0661\u0662\u0663\u0664\u0665\u0666", encoding="json")  # Arabic-Indic
@example(text="\uff11\uff12\uff13\uff14\uff15\uff16", encoding="form")  # fullwidth
@example(text="123456\x00", encoding="form")
@example(text="12345\n6", encoding="json")
@example(text="1" * 5000, encoding="json")
@example(text="\ud800" * 6, encoding="json")
@given(text=otp_texts(), encoding=st.sampled_from(["json", "form", "raw"]))
def test_any_malformed_code_is_a_400_that_costs_nothing(
    world: World, text: str, encoding: str
) -> None:
    """Unicode digits, NUL, newlines, huge strings: 400 (413 past the body limit), never 5xx."""
    assume(not _WELL_FORMED.fullmatch(text))
    body, media_type = verify_body(text, encoding)
    before = world.snapshot()
    response = world.app.run(
        world.app.client.post(
            "/api/otp/verify",
            content=body,
            headers={
                "content-type": media_type,
                "cookie": f"__Host-otp={world.cookie('format')}",
            },
        )
    )
    if len(body) > world.app.app.state.settings.max_body_bytes:
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "BODY:TOO_LARGE"
    else:
        assert response.status_code == 400, (text, response.text)
        assert response.json()["error"] in {"OTP:INVALID_FORMAT", "BODY:INVALID"}
    assert "set-cookie" not in response.headers
    assert world.snapshot() == before


def test_every_session_survives_the_attacks(world: World) -> None:
    """After all the attacks above, each session still verifies with what it had left."""
    app = world.app
    fresh, guessed, two = (world.victims[n] for n in ("fresh", "guessed", "two-entries"))
    eve = world.victims["format"]
    assert app.run(fresh.browser.verify(fresh.code)).status_code == 200
    assert app.run(guessed.browser.verify(guessed.code)).status_code == 200
    # The format attacks cost eve nothing: a wrong code now leaves 2 of the 3 attempts.
    assert app.run(eve.browser.verify(wrong(eve.code))).json()["attemptsLeft"] == 2
    assert app.run(eve.browser.verify(eve.code)).status_code == 200
    # Two entries: the current one (dave), then carol's, whose cookie comes back re-set.
    assert app.run(two.browser.verify(two.code)).status_code == 200
    assert app.run(two.browser.verify(world.extra_codes["two-entries"])).status_code == 200
    for victim in world.victims.values():
        world.cookies_seen += victim.browser.history


# Characters whose case mapping or compatibility form changes length or lands in ASCII,
# line breaks and NUL, invisible and bidirectional controls, look-alikes of @ and dot.
_TRICKY = (
    "\u0130\u0131\u00df\u1e9e\u03a3\u03c2\u017f\u212a\u212b\ufb01\ufb00\u01c5\u0345"
    "\r\n\x00\t \u200b\u200d\u202e\u2028\ufeff\uff20\uff0e\ufe6b"
    "@.+-_\"\\'()<>[]:;,"
)
_EMAIL_PARTS = st.text(st.sampled_from(_TRICKY) | st.characters(codec="ascii"), max_size=70)


def email_like() -> st.SearchStrategy[str]:
    """Strings shaped like addresses, built from tricky characters and repetitions."""
    repeated = st.builds(
        lambda char, times, tail: char * times + tail,
        st.sampled_from(_TRICKY + "aZ0"),
        st.integers(1, 130),
        _EMAIL_PARTS,
    )
    local = st.one_of(_EMAIL_PARTS, repeated, st.text(max_size=70))
    domain = st.one_of(
        st.sampled_from(
            [
                "example.com",
                "EXAMPLE.COM",
                "\u4f8b\u5b50.\u5e7f\u544a",
                "xn--ls8h.la",
                "[127.0.0.1]",
                "d" * 60 + ".com",
                "d" * 63 + "." + "e" * 63 + ".com",
            ]
        ),
        _EMAIL_PARTS.map(lambda part: part + ".com"),
        repeated.map(lambda part: part + ".com"),
    )
    return st.builds(lambda left, right: f"{left}@{right}", local, domain) | st.text()


def phone_like() -> st.SearchStrategy[str]:
    """Strings shaped like phone numbers: + and digits of any script, separators, junk."""
    digits = st.text(
        st.characters(categories=["Nd", "No"]) | st.sampled_from(" -().\u00a0\u2007x#*\x00\n"),
        max_size=40,
    )
    return st.one_of(
        digits.map(lambda text: "+" + text),
        st.builds(lambda cc, rest: f"+{cc}{rest}", st.integers(0, 999), digits),
        st.text(max_size=40),
    )


@pytest.fixture(scope="module")
def credentials_app() -> Iterator[SyncApp]:
    """An app on the memory store for the credential property."""
    app = SyncApp()
    yield app
    app.close()


def _is_clean_text(text: str) -> bool:
    """No control, format, separator, surrogate, private or unassigned character."""
    return all(
        unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}
        for c in text
    )


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@example(field="email", text="\u0130" * 64 + "@" + "d" * 60 + ".com")  # İ lower-cases to 2
@example(field="email", text="a" * 60 + "@" + "\u0130" * 60 + ".com")
@example(field="email", text="ada\r\n@example.com")
@example(field="email", text="ada@example.com\x00")
@example(
    field="phone", text="+\u0664\u0664\u0667\u0669\u0661\u0661\u0661\u0662\u0663\u0664\u0665\u0666"
)
@example(field="phone", text="+44 7911 123456\n")
@given(
    field=st.sampled_from(["email", "phone"]),
    text=st.one_of(email_like(), phone_like()),
)
def test_credentials_of_every_character_class_are_validated_or_refused_cleanly(
    credentials_app: SyncApp, field: str, text: str
) -> None:
    """Accepted credentials come back normal and stable; the rest get CREDENTIAL:INVALID."""
    app = credentials_app
    sent = len(app.sender.sent)
    app.client.cookies.clear()  # a new browser each time: every accepted credential is sent
    response = app.run(
        app.client.post(
            "/api/otp/create",
            content=json.dumps({field: text}).encode(),
            headers={"content-type": "application/json"},
        )
    )
    assert response.status_code in (200, 400), (text, response.text)
    if response.status_code == 400:
        assert response.json()["error"] == "CREDENTIAL:INVALID", response.text
        assert "set-cookie" not in response.headers
        assert len(app.sender.sent) == sent
        return
    address = response.json()["credential"]
    assert _is_clean_text(address), ascii(address)
    assert [m.credential.address for m in app.sender.sent[sent:]] == [address]
    if field == "email":
        assert len(address) <= 254, ascii(address)
        assert normalize_email(address) == address, ascii(address)
    else:
        assert re.fullmatch(r"\+[1-9][0-9]{6,14}", address), ascii(address)
        assert normalize_phone(address) == address


def test_credential_answers_are_plain_json(credentials_app: SyncApp) -> None:
    """A refused credential's answer names the field and echoes nothing the client sent."""
    app = credentials_app
    hostile = "<script>alert(1)</script>\r\nX-Injected: 1@example.com"
    response = app.run(app.client.post("/api/otp/create", json={"email": hostile}))
    assert response.status_code == 400
    assert response.json() == {
        "error": "CREDENTIAL:INVALID",
        "message": response.json()["message"],
        "fields": ["email"],
    }
    assert "script" not in response.text
