"""Deployment files agree with the code: sample.env, README, docker-compose, Dockerfile, lock."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from custom import HOOKS
from otpserver.errors import ConfigError
from otpserver.http.app import create_app
from otpserver.settings.environment import Settings

ROOT = Path(__file__).parent.parent


def sample_env() -> dict[str, str]:
    """sample.env as {variable: default}."""
    pairs = {}
    for line in (ROOT / "sample.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_sample_env_and_the_readme_table_agree_on_every_default() -> None:
    """Each README table row names a variable of sample.env with the same default, and no
    variable is missing from either."""
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(OTP_[A-Z0-9_]+)` \| (`[^`]*`|—) \|", readme, re.MULTILINE)
    table = {name: "" if default == "—" else default.strip("`") for name, default in rows}
    assert table == sample_env()


def test_the_env_file_is_ignored_by_git(tmp_path: Path) -> None:
    """`.env` (the master key's home) is ignored, so `git add -A` can never commit it.

    Asked of git itself, in a scratch repository holding the project's `.gitignore`, so the
    answer is the same in a checkout and in a copy that is no repository (the fork check)."""
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True, capture_output=True)
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", ".env"], cwd=tmp_path, check=False, capture_output=True
    )
    assert result.returncode == 0


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """The Dockerfile's USER is a numeric uid:gid other than 0, set after every install, and
    every OTP_ variable it sets is a documented one."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert len(users) == 1
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[0])
    assert dockerfile.rindex("RUN ") < dockerfile.index("USER ")
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert set(re.findall(r"\b(OTP_[A-Z_]+)=", dockerfile)) <= set(sample_env())


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def interpolated(value: str, given: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` / `${NAME:?message}` substitution, as `docker compose`
    does it with `given` as the shell environment and `.env`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if name in given:
            return given[name]
        if operator == ":-":
            return rest
        raise AssertionError(f"{name} must be given: {rest}")

    return re.sub(r"\$\{([A-Z_]+)(:-|:\?)([^}]*)\}", substitute, value)


def test_compose_variables_are_documented_and_make_a_valid_configuration() -> None:
    """Every OTP_ variable of the compose file's server is in sample.env; with the master key
    from `.env` they pass the server's own checks; the store and SMTP hosts are services of
    the file, and the ports it publishes are the ones the server listens on."""
    document = compose()
    services = document["services"]
    server = services["otpserver"]
    names = set(server["environment"])
    assert names <= set(sample_env()), names - set(sample_env())
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    env = {
        k: interpolated(str(v), {"OTP_MASTER_KEY": key}) for k, v in server["environment"].items()
    }
    try:
        settings = Settings.from_env(env)
        create_app(settings, HOOKS)
    except ConfigError as error:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"docker-compose.yml is refused: {error}") from None
    assert settings.env == "production"
    assert settings.workers > 1
    store_host = re.match(r"redis://([^:/]+)", settings.store_url)
    assert store_host is not None
    assert store_host.group(1) in services
    assert settings.delivery.smtp is not None
    assert settings.delivery.smtp.host in services
    published = {str(p).rsplit(":", 2)[-1] for p in server["ports"]}
    assert str(settings.port) in published
    assert str(settings.operations.metrics_port) in published
    # The key comes from `.env` (ignored by git), never written in the compose file.
    assert str(server["environment"]["OTP_MASTER_KEY"]).startswith("${OTP_MASTER_KEY:?")


def test_compose_without_a_master_key_is_refused_by_compose_itself() -> None:
    """Without OTP_MASTER_KEY in `.env`, the compose file's `:?` stops `docker compose up`."""
    server = compose()["services"]["otpserver"]
    raw = str(server["environment"]["OTP_MASTER_KEY"])
    with pytest.raises(AssertionError, match=r"OTP_MASTER_KEY must be given: put .* in \.env"):
        interpolated(raw, {})


def locked(path: Path) -> dict[str, str]:
    """A lock file as {normalized name: version}, checking every pin carries a hash."""
    text = path.read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{match.group(1)} is pinned without a hash"
            pins[normalized(match.group(1))] = match.group(2)
    return pins


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
        assert match is not None
        names.add(normalized(match.group()))
    return names


def test_the_lock_files_pin_every_dependency_with_hashes() -> None:
    """requirements.lock pins every runtime dependency, requirements-dev.lock every runtime
    and dev one, each with hashes; both agree on the versions they share. A dependency
    added to pyproject.toml without `scripts/lock` fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_names(project["dependencies"])
    dev = requirement_names(project["optional-dependencies"]["dev"])
    runtime_lock = locked(ROOT / "requirements.lock")
    dev_lock = locked(ROOT / "requirements-dev.lock")
    assert runtime <= set(runtime_lock), runtime - set(runtime_lock)
    assert runtime | dev <= set(dev_lock), (runtime | dev) - set(dev_lock)
    shared = set(runtime_lock) & set(dev_lock)
    assert {n: runtime_lock[n] for n in shared} == {n: dev_lock[n] for n in shared}
    for path in ("requirements.lock", "requirements-dev.lock"):
        assert "--find-links" not in (ROOT / path).read_text()
        assert "--index-url" not in (ROOT / path).read_text()


def test_the_test_script_installs_from_the_lock() -> None:
    """scripts/test installs the locked files by hash, then the server without resolving."""
    script = (ROOT / "scripts" / "test").read_text()
    assert "--require-hashes" in script
    assert "-r requirements-dev.lock" in script
    assert "--no-deps -e ." in script
