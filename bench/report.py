"""Markdown tables of a results file: what docs/BENCHMARKS.md quotes."""

from __future__ import annotations

from typing import Any

NAMES = {
    "ceiling": "bare endpoint (ceiling)",
    "create": "create",
    "verify_wrong": "verify, wrong code",
    "flow": "create → verify (full flow)",
    "verify_right": "verify, right code (signed result)",
    "challenge_create": "/v1 challenge create",
    "challenge_check": "/v1 challenge check, right code",
    "totp_verify": "/v1 TOTP verify, right code",
    "challenge_flow": "/v1 challenge create → check (server-to-server flow)",
    "result_signing": "result signing alone (one signed result, no request)",
}


def _rps(row: dict[str, Any]) -> str:
    return f"{row['rps']:,.0f} ({row['rps_min']:,.0f}-{row['rps_max']:,.0f})"


def _ratio(row: dict[str, Any]) -> str:
    return f"{row['ratio']:.0%}" if "ratio" in row else "—"


def setups_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | scenario | req/s median (min-max) | ratio to ceiling | p50 ms | p99 ms "
        "| server CPU ms/req | Redis CPU ms/req | wrk CPU | other load | unexpected |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        name = result["setup"]["name"]
        for scenario, row in result["summary"].items():
            redis = row.get("redis_cpu_ms_per_request")
            label = NAMES.get(scenario, scenario)
            if "flows_per_second" in row:
                label += f" ({row['flows_per_second']:,.0f} flows/s)"
            lines.append(
                f"| {name} | {label} | {_rps(row)} | {_ratio(row)} | {row['p50_ms']:.1f} "
                f"| {row['p99_ms']:.1f} | {row['server_cpu_ms_per_request']:.3f} "
                f"| {'—' if redis is None else f'{redis:.3f}'} "
                f"| {row['client_cpu_share']:.0%} | {row.get('background_cpu_share', 0):.0%} "
                f"| {row['unexpected']} |"
            )
    return "\n".join(lines)


def workers_table(results: list[dict[str, Any]]) -> str | None:
    """Requests each worker served in the setups with several, or None when none has."""
    lines = [
        "| setup | scenario | requests per worker (process id: requests) "
        "| busiest worker's share |",
        "| --- | --- | --- | ---: |",
    ]
    for result in results:
        for scenario, row in result["summary"].items():
            served = row.get("worker_requests")
            if served is None:
                continue
            ranked = sorted(served.items(), key=lambda item: -item[1])
            cells = ", ".join(f"{pid}: {count:,}" for pid, count in ranked) or "none counted"
            share = row.get("busiest_worker_share")
            lines.append(
                f"| {result['setup']['name']} | {NAMES.get(scenario, scenario)} | {cells} "
                f"| {'—' if share is None else f'{share:.0%}'} |"
            )
    return "\n".join(lines) if len(lines) > 2 else None


NOISY_SHARE = 0.05
"""Other work on the machine above this share of its CPU, in the median round, makes a
scenario's figures the machine's rather than the server's."""


def noise_warning(results: list[dict[str, Any]]) -> str | None:
    """A warning naming the rows that ran while something else took `NOISY_SHARE` or more
    of the CPU, or None when every row ran on a quiet machine."""
    noisy = [
        f"{result['setup']['name']}: {NAMES.get(scenario, scenario)} "
        f"({row['background_cpu_share']:.0%})"
        for result in results
        for scenario, row in result["summary"].items()
        if row.get("background_cpu_share", 0) >= NOISY_SHARE
    ]
    if not noisy:
        return None
    return (
        f"**Noisy run**: other work took {NOISY_SHARE:.0%} or more of the machine's CPU "
        f"during {'; '.join(noisy)}. Those rows measure the machine as much as the server, "
        "and a slowed ceiling inflates every ratio; run again before quoting them."
    )


def stacks_table(results: list[dict[str, Any]]) -> str:
    scenarios = [s for s in NAMES if any(s in r["summary"] for r in results)]
    head = "| stack | " + " | ".join(NAMES[s] for s in scenarios) + " |"
    lines = [head, "| --- |" + " ---: |" * len(scenarios)]
    for result in results:
        cells = []
        for scenario in scenarios:
            row = result["summary"].get(scenario)
            if row is None:
                cells.append("—")
            elif scenario == "ceiling":
                cells.append(f"{row['rps']:,.0f}")
            else:
                cells.append(f"{row['rps']:,.0f} ({_ratio(row)})")
        lines.append(f"| {result['setup']['stack']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_table(scaling: dict[str, Any]) -> str:
    levels = scaling["levels"]
    scenarios = list(levels[0]["summary"])
    head = (
        "| live sessions | "
        + " | ".join(f"{NAMES[s]} req/s (vs 0)" for s in scenarios)
        + " | p99 / max ms (create) | RSS after fill | bytes per session (RSS delta) |"
    )
    lines = [head, "| ---: |" + " ---: |" * (len(scenarios) + 3)]
    for level in levels:
        cells = [
            f"{level['summary'][s]['rps']:,.0f} ({level['summary'][s].get('ratio', 1):.0%})"
            for s in scenarios
        ]
        prefill = level.get("prefill") or {}
        live = prefill.get("live_sessions", 0)
        per = (prefill["rss_after"] - prefill["rss_before"]) / live if live else None
        rss = prefill.get("rss_after")
        first = level["summary"][scenarios[0]]
        lines.append(
            f"| {level['live_sessions']:,} | "
            + " | ".join(cells)
            + f" | {first['p99_ms']:.1f} / {first.get('max_ms', float('nan')):.0f} "
            + f"| {'—' if rss is None else f'{rss / 2**20:,.0f} MiB'} "
            + f"| {'—' if per is None else f'{per:.0f}'} |"
        )
    return "\n".join(lines)


def trips_table(trips: dict[str, Any]) -> str:
    lines = [
        "| request | round trips | commands |",
        "| --- | ---: | --- |",
    ]
    for kind, row in trips.items():
        commands = ", ".join(f"{name} x{n:g}" for name, n in row["commands"].items())
        lines.append(f"| {kind} | {row['round_trips_per_request']:g} | {commands} |")
    return "\n".join(lines)


def cookies_table(cookies: dict[str, Any]) -> str:
    lines = [
        "| addresses | credentials | cookie value | `Cookie:` entry | `Set-Cookie` |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label in ("typical", "longest"):
        for row in cookies[label]:
            lines.append(
                f"| {label} | {row['credentials']} | {row['value_bytes']} B "
                f"| {row['cookie_header_bytes']} B | {row['set_cookie_bytes']} B |"
            )
    return "\n".join(lines)


def instructions_table(counts: dict[str, Any]) -> str:
    lines = [
        "| store | scenario | instructions per request | ratio to ceiling | unexpected |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for store, rows in counts.items():
        for scenario, row in rows.items():
            lines.append(
                f"| {store} | {NAMES.get(scenario, scenario)} "
                f"| {row['instructions_per_request']:,.0f} | {_ratio(row)} "
                f"| {row['unexpected']} |"
            )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """Every table the results hold, with the machine and options first."""
    machine = results["machine"]
    parts = [
        f"# Benchmark results {results['started']}",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()),
        "",
        "Options: " + ", ".join(f"{k}={v}" for k, v in results["options"].items()),
    ]
    if results.get("main"):
        parts += ["", "## Scenarios", "", setups_table(results["main"])]
        warning = noise_warning(results["main"])
        if warning:
            parts += ["", warning]
        per_worker = workers_table(results["main"])
        if per_worker:
            parts += [
                "",
                "## Requests per worker",
                "",
                "Counted by each worker in its own metrics file: its round trips to Redis, "
                "one per request here (the ceiling has no store, so none).",
                "",
                per_worker,
            ]
    if results.get("stacks"):
        parts += ["", "## Server stacks (memory store, one worker)", ""]
        parts += [stacks_table(results["stacks"])]
    if results.get("scaling"):
        parts += ["", "## Live sessions in the memory store", "", scaling_table(results["scaling"])]
    if results.get("round_trips"):
        parts += ["", "## Redis round trips per request", "", trips_table(results["round_trips"])]
    if results.get("sizes"):
        sizes = results["sizes"]
        parts += ["", "## Cookie sizes (production form)", "", cookies_table(sizes["cookies"])]
        memory = sizes["memory"]
        parts += [
            "",
            f"Memory store, traced allocations: {memory['traced_bytes_per_id']:.0f} B per live "
            f"ID at {memory['live_ids']:,} IDs.",
        ]
    if results.get("instructions"):
        parts += [
            "",
            "## Instructions per request (callgrind, server process only; one worker)",
            "",
            instructions_table(results["instructions"]),
        ]
    return "\n".join(parts) + "\n"
