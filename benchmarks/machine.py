"""What a benchmark ran on, for its printout and its JSON: date, cores, CPU model, commit."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def commit() -> str:
    """Short hash of HEAD, marked when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (" (+ uncommitted changes)" if dirty else "")


def machine() -> dict[str, str]:
    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "nproc": str(os.cpu_count()),
            "cpu": cpu_model(), "commit": commit(), "python": sys.version.split()[0]}
