"""The real daemon (bin/diskseqd.cjs) on a private socket in a temp dir, started with the
node flags of its shebang line, its JSON log lines collected. Never the default socket, and
no Varlink listener and a private --runtime-dir and --cache-dir (their defaults are one per
host)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(os.environ.get("DISKSEQD_REPO_ROOT") or Path(__file__).resolve().parents[4])
NODE = os.environ.get("DISKSEQD_NODE") or shutil.which("node") or "node"
DAEMON_SCRIPT = REPO_ROOT / "bin" / "diskseqd.cjs"
CLI_SCRIPT = REPO_ROOT / "bin" / "diskseq-open.js"


def shebang_node_flags(script: Path = DAEMON_SCRIPT) -> list[str]:
    first = script.read_text().split("\n", 1)[0]
    return [word for word in first.split() if word.startswith("--")]


class Daemon:
    """A running diskseqd. stop() is idempotent; the temp dir goes with it."""

    def __init__(self, *, world_accessible: bool = False, extra_args: list[str] | None = None,
                 ready_timeout: float = 15.0) -> None:
        self.dir = tempfile.mkdtemp(prefix="diskseqd-pydaemon-")
        if world_accessible:
            os.chmod(self.dir, 0o755)
        self.socket_path = os.path.join(self.dir, "d.sock")
        self.logs: list[dict[str, object]] = []
        self.other_output: list[str] = []
        self._changed = threading.Condition()
        args = [NODE, *shebang_node_flags(), str(DAEMON_SCRIPT), "--socket", self.socket_path,
                "--runtime-dir", os.path.join(self.dir, "run"), "--cache-dir", os.path.join(self.dir, "cache"),
                "--log-level", "info", "--no-varlink",
                *(extra_args or [])]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        try:
            self.wait_for_log(lambda line: line.get("msg") == "serving", ready_timeout, 'the "serving" line')
            if world_accessible:
                os.chmod(self.socket_path, 0o666)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                try:
                    self.logs.append(json.loads(line))
                except ValueError:
                    self.other_output.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, predicate, timeout: float = 5.0, what: str = "a log line") -> dict[str, object]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.logs:
                    if predicate(line):
                        return line
                if self.process.poll() is not None:
                    raise RuntimeError(f"daemon exited ({self.process.returncode}) before {what}: {self.describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {timeout} s: {self.describe()}")
                self._changed.wait(min(remaining, 0.1))

    def wait_for_audits(self, count: int, op: str | None = None, timeout: float = 5.0) -> list[dict[str, object]]:
        """Waits until at least `count` audit lines (of `op`, when given) are in; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = [a for a in self.audits() if op is None or a.get("op") == op]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} audit lines of {op or 'any op'} after {timeout} s, expected {count}")
            time.sleep(0.01)

    def audits(self) -> list[dict[str, object]]:
        with self._changed:
            return [line for line in self.logs if line.get("msg") == "audit"]

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def describe(self) -> str:
        return "\n".join(self.other_output[-15:] + [json.dumps(line) for line in self.logs[-5:]])

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
