"""``ack-sandbox up|down|status``: start, stop and report the local ACK stand-in."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ack_sandbox.server import PID_FILE, READY_FILE

DEFAULT_STATE_DIR = Path(os.environ.get("ACK_SANDBOX_STATE_DIR", ".ack-sandbox"))


class SandboxError(RuntimeError):
    """The sandbox did not start or stop as asked."""


def _pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer (401, 404...) means the server is up
    except (urllib.error.URLError, OSError):
        return False
    return True


def status(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any]:
    pid = _pid(state_dir)
    ready_file = state_dir / READY_FILE
    endpoints = json.loads(ready_file.read_text()) if pid and ready_file.exists() else {}
    endpoints.pop("pid", None)
    services = {name: _answers(url) for name, url in endpoints.items()}
    return {
        "running": bool(pid) and bool(services) and all(services.values()),
        "pid": pid,
        "state_dir": str(state_dir.resolve()),
        "services": services,
    }


def up(state_dir: Path = DEFAULT_STATE_DIR, time_scale: float = 1.0, timeout: float = 60.0) -> dict[str, Any]:
    """Start the daemon (if not already running) and return once every service answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    if _pid(state_dir) is None:
        (state_dir / READY_FILE).unlink(missing_ok=True)
        with open(state_dir / "sandbox.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ack_sandbox.server",
                    "--state-dir",
                    str(state_dir),
                    "--time-scale",
                    str(time_scale),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(state_dir)
        if st["running"]:
            return json.loads((state_dir / "endpoints.json").read_text())
        if proc is not None and proc.poll() is not None:
            break  # the daemon exited: its log says why
        time.sleep(0.1)
    tail = (
        (state_dir / "sandbox.log").read_text(errors="replace")[-2000:] if (state_dir / "sandbox.log").exists() else ""
    )
    raise SandboxError(f"sandbox did not come up within {timeout:.0f}s; last log lines:\n{tail}")


def down(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 20.0) -> bool:
    """Stop the daemon; True if one was running."""
    pid = _pid(state_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid(state_dir) is None:
            return True
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return True


def ram_key(state_dir: Path, bucket: str = "*", prefix: str = "", user: str = "ram-reader") -> dict[str, object]:
    """Mint a RAM user's AccessKey allowed only to read ``bucket`` (``*``: any) under ``prefix``; the running
    daemon (or the next one) accepts it at once. Returns the key, secret included (shown once, as RAM does)."""
    from ack_sandbox.alibaba_credentials import CredentialStore, ram_keys_path

    ident = json.loads((state_dir / "identity.json").read_text())
    store = CredentialStore(
        ident["access_key_id"], ident["access_key_secret"], state_dir / "sts" / "issued.json", ram_keys_path(state_dir)
    )
    key = store.create_ram_key(user, bucket=bucket, prefix=prefix)
    return {**key.public(), "access_key_secret": key.access_key_secret}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ack-sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the sandbox; returns once everything answers")
    p_up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p_up.add_argument("--time-scale", type=float, default=1.0, help="compress cloud delays N times")
    p_up.add_argument("--timeout", type=float, default=60.0)
    for name in ("down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p_ram = sub.add_parser("ram-key", help="mint a RAM user's read-only OSS AccessKey (bucket/prefix)")
    p_ram.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p_ram.add_argument("--bucket", default="*", help="the one bucket it may read (default: any)")
    p_ram.add_argument("--prefix", default="", help="the key prefix it may read")
    p_ram.add_argument("--user", default="ram-reader")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            endpoints = up(args.state_dir, args.time_scale, args.timeout)
            shown = {k: v for k, v in endpoints.items() if k != "access_key_secret"}
            print(json.dumps({"state_dir": str(args.state_dir.resolve()), **shown}))
        elif args.command == "ram-key":
            print(json.dumps(ram_key(args.state_dir, args.bucket, args.prefix, args.user)))
        elif args.command == "down":
            print("stopped" if down(args.state_dir) else "not running")
        else:
            st = status(args.state_dir)
            print(json.dumps(st))
            return 0 if st["running"] else 3
    except SandboxError as exc:
        print(f"ack-sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
