"""Where container logs live and how the API's ``pods/{name}/log`` reads them.

Layout (like /var/log/pods): ``<state>/kubelet/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``.
Each line is written by the process itself (stdout+stderr); the kubelet prefixes nothing, so ``kubectl
logs`` shows the program's own output. ``previous=True`` reads the log of the previous instance
(restartCount - 1), as ``kubectl logs --previous`` does.
"""

from __future__ import annotations

from pathlib import Path

from ack_sandbox.context import SandboxContext


def pods_dir(ctx: SandboxContext) -> Path:
    path = ctx.service_dir("kubelet") / "pods"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pod_dir(ctx: SandboxContext, namespace: str, name: str, uid: str) -> Path:
    return pods_dir(ctx) / f"{namespace}_{name}_{uid}"


def container_log_path(
    ctx: SandboxContext, namespace: str, name: str, uid: str, container: str, restart_count: int
) -> Path:
    path = pod_dir(ctx, namespace, name, uid) / container
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{restart_count}.log"


def find_log(
    ctx: SandboxContext, namespace: str, name: str, uid: str | None, container: str, previous: bool = False
) -> Path | None:
    """The current (or previous) log file of a container, or None if it never started."""
    base = pods_dir(ctx)
    if uid:
        candidates = [base / f"{namespace}_{name}_{uid}"]
    else:
        candidates = sorted(base.glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime)
    for pdir in reversed(candidates):
        cdir = pdir / container
        if not cdir.is_dir():
            continue
        runs = sorted(int(p.stem) for p in cdir.glob("*.log") if p.stem.isdigit())
        if not runs:
            continue
        if previous:
            return cdir / f"{runs[-2]}.log" if len(runs) > 1 else None
        return cdir / f"{runs[-1]}.log"
    return None


def read_container_log(
    ctx: SandboxContext,
    namespace: str,
    name: str,
    uid: str | None,
    container: str,
    *,
    previous: bool = False,
    tail_lines: int | None = None,
    limit_bytes: int | None = None,
) -> bytes | None:
    """The bytes ``GET .../pods/{name}/log?container=&previous=&tailLines=&limitBytes=`` returns; None when
    the container has no log (the API then answers 400 'container ... is waiting to start' / 'previous
    terminated container ... not found')."""
    path = find_log(ctx, namespace, name, uid, container, previous)
    if path is None or not path.exists():
        return None
    data = path.read_bytes()
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data
