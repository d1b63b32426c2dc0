"""Run the entry points as a user does, in a subprocess, and check what the user sees."""

from __future__ import annotations

import os
import subprocess
import sys

from src.paths import PROJECT_ROOT


def script_env(full_error: bool = False) -> dict:
    """One thread (runs are compared exactly), the checkout importable (tests.helpers too)."""
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "HYDRA_FULL_ERROR": "1" if full_error else "0",
    }


def start(script: str, *args: str, full_error: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(full_error),
    )


def run_script(script: str, *args: str, full_error: bool = False, timeout: float = 300):
    """`python <script> <args>`; returns the CompletedProcess (stdout, stderr, returncode)."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / script), *args],
        capture_output=True,
        text=True,
        env=script_env(full_error),
        timeout=timeout,
    )


def assert_clean_error(result, *fragments: str) -> None:
    """Exit status 1, one `error:` line on stderr holding every fragment, no traceback."""
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    assert "error:" in result.stderr, out
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
