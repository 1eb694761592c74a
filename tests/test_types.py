"""The library and the jobs type-check: mypy over genre_batch/ and pipelines/ (config in pyproject)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_library_and_jobs_type_check(tmp_path: Path) -> None:
    # A cache of its own: a stale shared one can hide errors or report old ones.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
