"""Generated documents stay identical to the code: openapi.json, sample.env, error codes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from custom.credential import CreateRequest
from custom.otp import POLICY
from otpserver.errors import ERROR_CLASSES, OtpError
from otpserver.http import openapi
from otpserver.http.app import OtpApp
from otpserver.http.models import ErrorBody, TokenState, Verified
from otpserver.settings import sample
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender

ROOT = Path(__file__).parent.parent


def test_openapi_json_is_generated_from_the_code() -> None:
    """The committed openapi.json equals `python -m otpserver.http.openapi` output."""
    assert (ROOT / "openapi.json").read_text() == openapi.render(CreateRequest, POLICY)


def test_sample_env_is_generated_from_the_code() -> None:
    """The committed sample.env equals `python -m otpserver.settings.sample` output."""
    assert (ROOT / "sample.env").read_text() == sample.render()


def test_readme_configuration_table_is_generated_from_the_code() -> None:
    """The README's table between its markers equals `sample.render_table()` output."""
    readme = (ROOT / "README.md").read_text()
    assert sample.TABLE_BEGIN in readme
    assert readme == sample.with_table(readme)


def test_every_variable_the_code_reads_is_documented() -> None:
    """Every `OTP_*` name in the server and hooks appears in sample.env."""
    documented = {var.name for var in sample.all_variables()}
    used: set[str] = set()
    for path in [*ROOT.joinpath("otpserver").rglob("*.py"), *ROOT.joinpath("custom").rglob("*.py")]:
        used |= set(re.findall(r"\"(OTP_[A-Z_]+)\"", path.read_text()))
    assert used - documented == set()


def test_error_codes_are_unique_and_all_documented() -> None:
    """Each error class has its own stable code, and each code appears in openapi.json."""
    codes = [cls.code for cls in ERROR_CLASSES]
    assert len(codes) == len(set(codes))
    assert set(OtpError.__subclasses__()) <= set(ERROR_CLASSES)
    text = (ROOT / "openapi.json").read_text()
    for code in codes:
        assert f'"{code}"' in text


async def test_real_responses_match_the_documented_models(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """Bodies of a whole flow, errors included, validate against the OpenAPI models."""
    browser = Browser(client_for(make_app()))
    TokenState.model_validate((await browser.create()).json())
    code = sender.last_code
    for _ in range(2):
        ErrorBody.model_validate((await browser.verify(wrong(code))).json())
    ErrorBody.model_validate((await browser.verify(code)).json())
    ErrorBody.model_validate((await browser.resend()).json())
    clock.advance(30)
    TokenState.model_validate((await browser.resend()).json())
    clock.advance(5)
    Verified.model_validate((await browser.verify(sender.last_code)).json())
    ErrorBody.model_validate((await browser.verify(code)).json())
