"""The benchmark report flags figures taken while something else loaded the machine, and a
comparison on Redis keeps its rounds free of lockouts."""

from __future__ import annotations

from typing import Any

import redis

from bench.compare import clear_limit_counters, instructions_table
from bench.report import noise_warning
from otpserver.stores.redis import COUNTER_PREFIX, ID_PREFIX


def setup_result(name: str, shares: dict[str, float]) -> dict[str, Any]:
    return {
        "setup": {"name": name},
        "summary": {
            scenario: {"background_cpu_share": share} for scenario, share in shares.items()
        },
    }


def test_a_quiet_run_gets_no_warning() -> None:
    results = [setup_result("memory, 1 worker", {"ceiling": 0.0, "create": 0.01})]
    assert noise_warning(results) is None


def test_a_noisy_run_names_every_row_that_ran_under_load() -> None:
    results = [
        setup_result("memory, 1 worker", {"ceiling": 0.14, "create": 0.02, "flow": 0.06}),
        setup_result("redis, 1 worker", {"ceiling": 0.0, "create": 0.0}),
    ]
    warning = noise_warning(results)
    assert warning is not None
    assert "memory, 1 worker: bare endpoint (ceiling) (14%)" in warning
    assert "memory, 1 worker: create → verify (full flow) (6%)" in warning
    assert "create (2%)" not in warning
    assert "redis" not in warning


def test_a_comparison_clears_only_the_limit_counts_between_runs(redis_url: str) -> None:
    """Trees compared on one Redis share its counters; clearing them between runs keeps
    their wrong guesses from locking the benchmark's identities, and touches nothing else."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.mset(
            {COUNTER_PREFIX + b"f:%d" % n: b"1" for n in range(2500)} | {ID_PREFIX + b"kept": b"1"}
        )
        clear_limit_counters(redis_url)
        assert list(client.scan_iter(match=COUNTER_PREFIX + b"*")) == []
        assert client.get(ID_PREFIX + b"kept") == b"1"
    finally:
        client.close()


def test_an_instruction_comparison_gives_each_tree_as_a_share_of_the_first() -> None:
    def counts(ceiling: float, create: float) -> dict[str, Any]:
        return {
            "ceiling": {"instructions_per_request": ceiling, "unexpected": 0},
            "create": {"instructions_per_request": create, "unexpected": 0},
        }

    text = instructions_table(
        {"before": counts(200_000, 500_000), "after": counts(200_000, 470_000)}, ["create"]
    )
    assert "| before | create | 500,000 | 100.0% | 0 |" in text
    assert "| after | create | 470,000 | 94.0% | 0 |" in text
    assert "| after | bare endpoint (ceiling) | 200,000 | 100.0% | 0 |" in text
