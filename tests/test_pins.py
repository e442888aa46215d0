"""What the code relies on in its libraries beyond their documented API, and the pins that
keep it there: an upgrade that removes one fails here, naming it, before anything else."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Match, Route, Router

from otpserver.http.app import ExactRoute, OtpApp

ROOT = Path(__file__).parent.parent
INTERNALS = {
    "starlette": (
        "Starlette.build_middleware_stack",
        "Router.default",
        "Route.matches",
        "Match.PARTIAL",
        "Response.raw_headers",
    ),
    "pydantic": ("model_json_schema", "pydantic_core.to_json"),
}
"""Package -> the undocumented parts its comment in pyproject.toml names."""


def requirement(package: str) -> tuple[str, str]:
    """The dependency line for `package` and the comment block above it in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    lines = text.splitlines()
    names = tomllib.loads(text)["project"]["dependencies"]
    spec = next(name for name in names if re.match(rf"{package}\b", name))
    index = next(i for i, line in enumerate(lines) if line.strip() == f'"{spec}",')
    comments = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("#"):
            break
        comments.append(line.strip().lstrip("# "))
    return spec, " ".join(reversed(comments))


@pytest.mark.parametrize("package", sorted(INTERNALS))
def test_each_library_used_beyond_its_docs_is_pinned_and_says_why(package: str) -> None:
    """Its requirement has an upper bound, and the comment above it names each internal."""
    spec, comment = requirement(package)
    assert "<" in spec, spec
    for internal in INTERNALS[package]:
        assert internal in comment, (package, internal)


def test_the_starlette_internals_are_where_the_app_expects_them() -> None:
    """The overridden method, the router's default, the partial match and the raw header
    list all exist, and the app's subclasses really override what they mean to."""
    assert "build_middleware_stack" in vars(Starlette)
    assert "build_middleware_stack" in vars(OtpApp)
    assert callable(Router().default)
    assert Match.PARTIAL.name == "PARTIAL"
    assert "matches" in vars(Route)
    assert "matches" in vars(ExactRoute)
    assert list(inspect.signature(Route.matches).parameters) == ["self", "scope"]
    response = Response(b"", status_code=204)
    response.raw_headers = [(b"x-test", b"1")]
    assert response.raw_headers == [(b"x-test", b"1")]


def test_pydantic_still_writes_schemas_the_way_openapi_json_was_made() -> None:
    """An optional field is `anyOf` with null and a model has a title: the shapes the
    committed openapi.json holds, which a change of pydantic's generator would break."""

    class Probe(BaseModel):
        name: str | None = None

    schema = Probe.model_json_schema()
    assert schema["title"] == "Probe"
    assert schema["properties"]["name"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
