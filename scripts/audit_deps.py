"""Audit the installed dependencies for known vulnerabilities (pip-audit), for scripts/test.

Exit 1 on any finding, listing each vulnerable package, its advisory and the fixed versions.
When the vulnerability service cannot be reached (no network, a proxy that answers for no
package, a timeout), print a notice and exit 0: an offline run is not a clean audit, and the
notice says so, but it must not stop the rest of the checks. Any other failure is exit 1.

Run it alone with `.venv/bin/python scripts/audit_deps.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

TIMEOUT_SECONDS = 300
_NETWORK_TROUBLE = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "timed out",
    "Timeout",
    "ProxyError",
    "SSLError",
    "Network is unreachable",
)


def notice(reason: str) -> int:
    print(f"pip-audit: NOT AUDITED: {reason}; run `scripts/audit_deps.py` where PyPI is reachable")
    return 0


def main() -> int:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--skip-editable",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--timeout",
        "15",
    ]
    try:
        # A fixed command line built above; no shell, no user input.
        ran = subprocess.run(  # noqa: S603  # nosec B603
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return notice(f"the audit service did not answer within {TIMEOUT_SECONDS} s")
    try:
        report: dict[str, Any] = json.loads(ran.stdout)
    except ValueError:
        if any(sign in ran.stderr for sign in _NETWORK_TROUBLE):
            return notice("the vulnerability service could not be reached")
        print(ran.stderr or ran.stdout, file=sys.stderr)
        print("pip-audit: FAILED to run", file=sys.stderr)
        return 1
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})")
    if vulnerable:
        print(f"pip-audit: FAILED: {len(vulnerable)} vulnerable packages", file=sys.stderr)
        return 1
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        return notice(f"the service answered for none of {len(dependencies)} packages")
    skipped = sorted(d["name"] for d in dependencies if "skip_reason" in d)
    if skipped:
        print(f"pip-audit: not on PyPI, not audited: {', '.join(skipped)}")
    print(f"pip-audit: {len(audited)} packages audited, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
