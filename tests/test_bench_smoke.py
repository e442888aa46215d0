"""The benchmark harness still works end to end: a one-second smoke run, no timing checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.trips import KINDS

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.e2e


@pytest.fixture
def tools_installed() -> None:
    """The load generator and valgrind are OS packages; skipped locally when absent, a
    failure in CI."""
    missing = [tool for tool in ("wrk", "valgrind", "callgrind_control") if not shutil.which(tool)]
    if missing:
        message = f"{', '.join(missing)} not installed: apt-get install wrk valgrind"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def run_bench(*arguments: str) -> str:
    """Run `python <arguments>` from the repository; what it printed, once it succeeded."""
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.mark.usefixtures("tools_installed")
def test_the_harness_drives_every_scenario_and_reports_it(tmp_path: Path) -> None:
    """`python -m bench --smoke` runs each scenario against real processes and writes results
    in which every response had the status its scenario expects."""
    command = [
        "-m",
        "bench",
        "--smoke",
        "--phases",
        "main,trips,sizes,instructions",
        "--out",
        str(tmp_path),
    ]
    run_bench(*command)
    data = json.loads((tmp_path / "latest.json").read_text())
    summary = data["main"][0]["summary"]
    assert set(summary) == {"ceiling", "create", "verify_wrong", "flow", "challenge_flow"}
    for scenario, row in summary.items():
        assert row["requests"] > 0, scenario
        assert row["unexpected"] == 0, (scenario, data["main"][0]["runs"][scenario])
    assert summary["flow"]["flows_per_second"] > 0
    assert summary["challenge_flow"]["flows_per_second"] > 0
    several = data["main"][1]
    assert several["setup"]["workers"] == 2
    served: set[str] = set()
    for scenario, row in several["summary"].items():
        assert row["unexpected"] == 0, (scenario, several["runs"][scenario])
        if scenario == "ceiling":
            assert "worker_requests" not in row
            continue
        # One round trip per request, counted before its answer: never fewer than wrk saw.
        assert sum(row["worker_requests"].values()) >= row["requests"] > 0, (scenario, row)
        served |= set(row["worker_requests"])
    assert len(served) == 2, "the requests all reached one worker"
    trips = data["round_trips"]
    assert set(trips) == set(KINDS)
    # Whatever else the harness counts, the approving requests are among them.
    approvals = {"verify_correct", "challenge_check_right", "totp_verify_right", "backup_right"}
    assert approvals | {"device_check"} <= set(trips)
    # One round trip for every request in total, a correct verify included (the claim seam),
    # and on `/v1` the API key's own charge included (the gate of the same claim).
    for kind, row in trips.items():
        assert row["round_trips_per_request"] == 1, (kind, trips)
    assert data["sizes"]["cookies"]["typical"][0]["credentials"] == 1
    assert set(data["instructions"]) == {"memory", "redis"}
    for store, counted in data["instructions"].items():
        assert set(counted) == {
            "ceiling",
            "create",
            "verify_wrong",
            "flow",
            "verify_right",
            "challenge_create",
            "challenge_check",
            "totp_verify",
        } | ({"result_signing"} if store == "memory" else set()), store
        for scenario, row in counted.items():
            assert row["unexpected"] == 0, (store, scenario, row)
            # Far more than a request's parsing alone: the server's own work was counted.
            assert row["instructions_per_request"] > 50_000, (store, scenario, row)
        assert counted["create"]["ratio"] < 1, store
    signing = data["instructions"]["memory"]["result_signing"]
    assert 0 < signing["instructions_per_signature"] < signing["instructions_per_request"]
    text = (tmp_path / "latest.md").read_text()
    assert "| memory, 1 worker | create |" in text
    assert "## Requests per worker" in text
    assert "| redis, 2 workers | create | " in text
    assert "## Instructions per request" in text


@pytest.mark.usefixtures("tools_installed")
def test_the_phase_counter_counts_every_phase_with_a_part_swapped_out() -> None:
    """`python -m bench.phases` counts creates, right and wrong verifies under callgrind,
    here without the result's signature: every phase counted, none near zero."""
    printed = run_bench("-m", "bench.phases", "--requests", "20", "--without", "signature")
    figures = {
        name: int(value.replace(",", ""))
        for name, value in (line.split() for line in printed.splitlines()[1:])
    }
    assert set(figures) == {"create", "right", "wrong"}, printed
    assert all(count > 100_000 for count in figures.values()), figures
