"""`otpserver`'s public API: what `custom/` may import, and an import that builds nothing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import otpserver

ROOT = Path(__file__).parent.parent
CUSTOM_FILES = sorted((ROOT / "custom").glob("*.py"))


def core_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every import of the core in `path`; name is "" for `import x`."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "otpserver":
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (alias.name, "") for alias in node.names if alias.name.split(".")[0] == "otpserver"
            ]
    return found


def test_all_is_sorted_and_every_name_loads() -> None:
    """`__all__` is sorted, lists exactly the lazily loaded names, and each one resolves."""
    assert otpserver.__all__ == sorted(otpserver.__all__)
    assert set(otpserver.__all__) == set(otpserver._HOMES)
    for name in otpserver.__all__:
        assert getattr(otpserver, name) is not None, name
    with pytest.raises(AttributeError):
        _ = otpserver.no_such_name


@pytest.mark.parametrize("path", CUSTOM_FILES, ids=lambda path: path.name)
def test_custom_imports_only_the_public_api(path: Path) -> None:
    """Every core import in `custom/` is `from otpserver import <a name in __all__>`."""
    for module, name in core_imports(path):
        assert module == "otpserver", f"{path.name} imports {module}: use `from otpserver import`"
        assert name in otpserver.__all__, f"{path.name} imports {name}, not in otpserver.__all__"


def test_the_check_sees_a_private_import() -> None:
    """The import parser finds deep imports, so the check above can fail."""
    probe = ROOT / "custom" / "stores.py"
    assert ("otpserver", "IdStore") in core_imports(probe)
    assert core_imports(Path(__file__)) == [("otpserver", "")]


def test_importing_otpserver_builds_nothing() -> None:
    """`import otpserver` loads no app, no HTTP stack, no store client and no `custom/`."""
    script = (
        "import json, sys, otpserver; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'otpserver', 'custom', 'starlette', 'redis', 'uvicorn'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == ["otpserver"]
