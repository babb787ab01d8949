"""Runs a Python snippet as an unprivileged user (setpriv drops root before Python starts),
so the daemon sees a real unprivileged peer. The snippet comes in with -c and runs in /:
the peer never reads the checkout. The diskseqd package it imports is the one installed in
this interpreter's environment, which must be readable by that user."""
from __future__ import annotations

import json
import os
import subprocess
import sys

NOBODY = 65534


def run_as(uid: int, gid: int, code: str, env: dict[str, str] | None = None, timeout: float = 30) -> dict:
    """Runs `code` as uid/gid (no supplementary groups); returns the JSON its last stdout
    line holds."""
    args = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", sys.executable, "-c", code]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd="/", env=full_env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"peer failed (exit {done.returncode}): stdout {done.stdout!r} stderr {done.stderr!r}")
    return json.loads(lines[-1])
