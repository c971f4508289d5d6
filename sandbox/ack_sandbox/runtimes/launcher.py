"""Container entry point for the Python runtimes: ``python -m ack_sandbox.runtimes.launcher MODULE ARGS...``.

With ``ACK_SANDBOX_TF_ZYGOTE`` set it imports nothing heavy and runs ``MODULE``'s ``main()`` as a fork of
the pre-imported zygote (``tf_zygote``), so a container costs a bare interpreter's start instead of
importing aiohttp, numpy (and TensorFlow) again; otherwise, or when the zygote is unreachable, it runs
``MODULE`` in this process. Either way the container's behaviour is the module's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import sys

STARTUP_NICE_ENV = "ACK_SANDBOX_STARTUP_NICE"
_PR_SET_PDEATHSIG = 1


def adopt_container_settings() -> None:
    """What the kubelet asks of every container process, done here so that it can spawn containers without
    a pre-exec hook: die with the kubelet (``PR_SET_PDEATHSIG``) and start at the start-up CPU priority
    (``ACK_SANDBOX_STARTUP_NICE``; the runtime takes the serving priority back once it listens)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    nice = os.environ.get(STARTUP_NICE_ENV, "")
    if nice.isdigit() and int(nice) > os.getpriority(os.PRIO_PROCESS, 0):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, int(nice))


def run(module: str, argv: list[str]) -> int:
    from ack_sandbox.runtimes.tf_zygote import RUNTIME_MODULES, ZYGOTE_ENV, launch

    adopt_container_settings()
    if module not in RUNTIME_MODULES:
        print(f"launcher: unknown runtime {module!r} (one of {', '.join(RUNTIME_MODULES)})", file=sys.stderr)
        return 2
    socket_path = os.environ.pop(ZYGOTE_ENV, "")
    if socket_path:
        logging.basicConfig(level="INFO", stream=sys.stdout, format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
        rc = launch(socket_path, argv, module)
        if rc is not None:
            return rc
    sys.argv = [module, *argv]
    return int(importlib.import_module(module).main() or 0)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m ack_sandbox.runtimes.launcher MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
