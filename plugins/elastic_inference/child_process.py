"""Child processes a task starts (locust): an environment without secrets, and no life beyond the task.

* :func:`child_env` — what a child gets from the worker's environment: an allow-list (``PATH``, ``HOME``, locale,
  Python and TLS settings, proxies) plus what the caller passes explicitly. Nothing else: no ``AIRFLOW_CONN_*`` /
  ``AIRFLOW_VAR_*``, no ``AIRFLOW__*`` (database URL, Fernet key, JWT secret), no ``ALIBABA_CLOUD_*`` / cloud keys,
  no kubeconfig, nothing named ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ``*CREDENTIAL*`` or ``*ACCESS_KEY*``.
* :func:`start_options` — ``Popen`` keywords: its own session / process group (so the whole group can be killed),
  and on Linux ``PR_SET_PDEATHSIG`` = SIGKILL: the kernel kills the child when the thread that started it dies,
  including a ``kill -9`` of the worker, which runs no ``on_kill``.
* :func:`kill_group` — SIGTERM to the child's process group, SIGKILL after a grace period (``on_kill``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Inherited as they are (exact names or prefixes): what an interpreter and an HTTP client need.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "TERM",
        "PWD",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUNBUFFERED",
        "PYTHONWARNINGS",
        "PYTHONDONTWRITEBYTECODE",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
ALLOWED_PREFIXES = ("LC_", "LOCUST_")
# Never passed on, even when allowed by name or given explicitly by a caller.
SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|FERNET|_CONN_|KUBECONFIG", re.I
)


def child_env(base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: the allow-listed part of ``base`` (default ``os.environ``) plus ``extra``.

    A name that looks like a secret is dropped from both (``extra`` is meant for paths and settings).
    """
    source = os.environ if base is None else base
    env = {
        k: v
        for k, v in source.items()
        if (k in ALLOWED_NAMES or k.startswith(ALLOWED_PREFIXES)) and not SECRET_NAME.search(k)
    }
    for k, v in (extra or {}).items():
        if SECRET_NAME.search(k):
            raise ValueError(f"refusing to pass {k!r} to a child process: it looks like a credential")
        env[k] = v
    # LOCUST_* may carry a secret in a value (e.g. LOCUST_HOST with user:password@): drop such values too.
    return {k: v for k, v in env.items() if not (k.startswith("LOCUST_") and "@" in v)}


def secret_values(environ: Mapping[str, str] | None = None, min_length: int = 6) -> list[str]:
    """Values in ``environ`` that a child must never see (for tests and self-checks)."""
    source = os.environ if environ is None else environ
    out = []
    for k, v in source.items():
        if len(v) >= min_length and (
            SECRET_NAME.search(k) or k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "ALIBABA_CLOUD_", "AIRFLOW__"))
        ):
            out.append(v)
    return out


_PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel for SIGKILL when the parent dies (Linux), or None elsewhere.

    libc's ``prctl`` is looked up here, in the parent: the child only calls it (no imports or allocation between
    fork and exec). If the parent died before the call took effect, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone: nobody would kill us
            os._exit(1)

    return preexec


def start_options() -> dict[str, Any]:
    """``Popen`` keywords for a child that must not outlive the task: own session, killed with its parent."""
    options: dict[str, Any] = {"start_new_session": True}
    preexec = _pdeathsig_preexec()
    if preexec is not None:
        options["preexec_fn"] = preexec
    return options


def kill_group(procs: Iterable[subprocess.Popen[Any]], grace: float = 5.0) -> None:
    """SIGTERM each child's process group, then SIGKILL what is left after ``grace`` seconds; reaps them."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


def _signal_group(p: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # start_new_session: the child leads its own group
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
