"""Fork server for the container runtimes: pay the imports once, fork per container.

``import tensorflow`` costs ~5 s and most of a TF Serving container's memory, and even the Seldon executor
and tfserving-proxy spend 0.25-0.35 s of CPU importing aiohttp and numpy: on a 2-core machine, a scale-out
of ten replicas starting thirty such processes at once takes the CPU from the replicas already serving. The
zygote imports TensorFlow and every runtime module once (nothing executed, so no TF thread pools exist
yet) and forks a child per container; the child runs the runtime's ``main()``. Measured
(benchmarks/runtimes.py): spawn -> AVAILABLE ~0.5 s instead of ~5 s, and the children share the imported
pages copy-on-write.

Protocol (Unix socket): the launcher (``launch()``, from ``python -m ack_sandbox.runtimes.launcher
MODULE ...`` or ``python -m ack_sandbox.runtimes.tensorflow_model_server ...``, with
``ACK_SANDBOX_TF_ZYGOTE=<socket>`` in its env) sends one JSON line ``{"module": ..., "argv": [...],
"env": {...}, "cwd": "...", "nice": N}`` with its stdout/stderr descriptors (SCM_RIGHTS); the zygote forks,
the child takes the launcher's CPU priority (``nice``), and the zygote replies ``{"pid": N}`` and later
``{"exit": code}``. The launcher forwards SIGTERM/SIGINT to the child and
exits with the child's code, so to the kubelet it *is* the container process. If the launcher dies
(SIGKILL after the grace period), the zygote kills the child; if the zygote dies, children die too
(PR_SET_PDEATHSIG). Without a reachable zygote the launcher serves in-process (logged), so the zygote is a
pure optimisation: start it with :func:`start` (e.g. from the kubelet) and stop it with :meth:`Zygote.stop`.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ZYGOTE_ENV = "ACK_SANDBOX_TF_ZYGOTE"
READY_LINE = "tf-zygote ready"
DEFAULT_MODULE = "ack_sandbox.runtimes.tfserving"
# What a child may run: each module has a ``main()`` reading ``sys.argv[1:]``; all are imported up front.
RUNTIME_MODULES = (
    DEFAULT_MODULE,
    "ack_sandbox.runtimes.seldon_executor",
    "ack_sandbox.runtimes.seldon_tfserving_proxy",
    "ack_sandbox.runtimes.http_echo",
)
log = logging.getLogger("ack_sandbox.tf_zygote")


# --- launcher side ----------------------------------------------------------------------------------


def launch(socket_path: str, argv: list[str], module: str = DEFAULT_MODULE) -> int | None:
    """Run ``module``'s main in a zygote child; ``None`` if the zygote is not reachable (run in-process)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        log.info("zygote at %s not reachable (%s): running %s in this process", socket_path, exc, module)
        return None
    sock.settimeout(None)
    request = (
        json.dumps(
            {
                "module": module,
                "argv": argv,
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "nice": os.getpriority(os.PRIO_PROCESS, 0),
            }
        ).encode()
        + b"\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [1, 2]))])
    reader = sock.makefile("rb")
    first = reader.readline()
    if not first:
        log.error("TF zygote closed the connection before starting the container")
        return 1
    pid = json.loads(first)["pid"]

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    line = reader.readline()
    if not line:
        log.error("TF zygote went away while the container ran (pid %d)", pid)
        return 137
    return int(json.loads(line)["exit"])


# --- zygote side ------------------------------------------------------------------------------------


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N -> 128+N, as container runtimes report


def _child(conn: socket.socket, fds: list[int], req: dict, keep_closed: list[socket.socket]) -> None:
    """In the forked child: become the container's runtime process; never returns."""
    code = 1
    try:
        for s in keep_closed:
            s.close()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1] if len(fds) > 1 else fds[0], 2)
        for fd in {null, *fds}:
            if fd > 2:
                os.close(fd)
        conn.close()
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        os.environ.pop(ZYGOTE_ENV, None)
        os.chdir(req.get("cwd") or "/")
        if isinstance(req.get("nice"), int):  # the launcher's priority (start-up priority, see common.py)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, max(req["nice"], os.getpriority(os.PRIO_PROCESS, 0)))
        module = req.get("module") or DEFAULT_MODULE
        if module not in RUNTIME_MODULES:
            raise ValueError(f"zygote runs only {', '.join(RUNTIME_MODULES)}, not {module!r}")
        sys.argv = [module, *req["argv"]]
        code = importlib.import_module(module).main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, then exit like a crashed binary
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(socket_path: str, idle_exit_seconds: float = 0) -> None:
    """The zygote's loop: single-threaded (selectors + SIGCHLD wakeup), so forking is safe."""
    from ack_sandbox.runtimes import common
    from ack_sandbox.runtimes.tfserving_model import import_tensorflow

    common.setup_logging()
    with contextlib.suppress(Exception):  # stop (and so stop the forks) when whoever started us dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    started = time.perf_counter()
    import_tensorflow()
    for module in RUNTIME_MODULES:  # the runtimes' code too, so forks start serving at once
        importlib.import_module(module)
    log.info("TensorFlow and the runtimes imported in %.2f s", time.perf_counter() - started)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    os.chmod(socket_path, 0o600)
    listener.listen(64)
    listener.setblocking(False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    children: dict[int, socket.socket] = {}
    by_conn: dict[socket.socket, int] = {}
    idle_since = time.monotonic()
    print(READY_LINE, flush=True)
    while not stopping:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "accept":
                conn, _ = listener.accept()
                conn.setblocking(True)
                try:
                    msg, fds = _recv_request(conn)
                except (OSError, ValueError) as exc:
                    log.error("bad launcher request: %s", exc)
                    conn.close()
                    continue
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _child(conn, fds, msg, [listener, *by_conn])
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                by_conn[conn] = pid
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "conn":
                conn = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(OSError):
                    if conn.recv(1, socket.MSG_PEEK):
                        continue
                # Launcher gone (killed): the container goes with it.
                pid = by_conn.pop(conn)
                sel.unregister(conn)
                conn.close()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None and conn in by_conn:
                by_conn.pop(conn)
                sel.unregister(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": _exit_code(status)}).encode() + b"\n")
                conn.close()
        if children:
            idle_since = time.monotonic()
        elif idle_exit_seconds and time.monotonic() - idle_since > idle_exit_seconds:
            log.info("idle for %.0f s with no containers: exiting", idle_exit_seconds)
            break
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    listener.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data = b""
    deadline = time.monotonic() + 5
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        msg, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(2 * fds.itemsize))
        if not msg:
            break
        data += msg
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data.endswith(b"\n") or not fds:
        for fd in fds:
            os.close(fd)
        raise ValueError("incomplete request (need a JSON line and stdout/stderr descriptors)")
    return json.loads(data), list(fds)


# --- lifecycle for the owner (kubelet, benchmarks, tests) --------------------------------------------


@dataclass
class Zygote:
    socket_path: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def ready(self) -> bool:
        """True once it accepts launchers; raises RuntimeError if the process died."""
        if self.process.poll() is not None:
            raise RuntimeError(f"TF zygote exited rc={self.process.returncode}: {self.log_tail()}")
        return READY_LINE in self.log_tail()

    def env(self) -> dict[str, str]:
        """What to add to a TF Serving container's env so its launcher uses this zygote."""
        return {ZYGOTE_ENV: self.socket_path}

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def spawn(socket_path: str | Path, log_path: str | Path) -> Zygote:
    """Start a zygote process (returns at once; see :meth:`Zygote.ready`)."""
    socket_path, log_path = str(socket_path), Path(log_path)
    if len(socket_path.encode()) > 100:
        raise ValueError(f"Unix socket path too long ({len(socket_path)} > 100 bytes): {socket_path}")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ack_sandbox.runtimes.tf_zygote", socket_path],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Zygote(socket_path, proc, log_path)


def start(socket_path: str | Path, log_path: str | Path, ready_timeout: float = 120) -> Zygote:
    """Start a zygote and return once it accepts launchers (TensorFlow imported)."""
    zygote = spawn(socket_path, log_path)
    end = time.monotonic() + ready_timeout
    while time.monotonic() < end:
        if zygote.ready():
            return zygote
        time.sleep(0.05)
    zygote.process.kill()
    raise TimeoutError(f"TF zygote not ready after {ready_timeout}s: {zygote.log_tail()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m ack_sandbox.runtimes.tf_zygote SOCKET_PATH", file=sys.stderr)
        sys.exit(2)
    try:
        serve(sys.argv[1])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"{sys.argv[1]} is in use by another zygote", file=sys.stderr)
        raise
