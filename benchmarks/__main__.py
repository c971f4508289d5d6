"""Run every benchmark module: ``python -m benchmarks [name ...] [--flag ...]``.

Discovers ``benchmarks/*.py`` modules that define ``main()`` and runs them one after another; names
restrict the run to those modules, and arguments starting with ``-`` (and what follows them) are passed to
each module's ``main`` (e.g. ``python -m benchmarks serving_path --rates 50,100``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    first_flag = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    wanted, passed = set(args[:first_flag]), args[first_flag:]
    status = 0
    for name in modules():
        if wanted and name not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"=== benchmarks.{name} ===", flush=True)
        try:
            rc = entry(passed)
        except SystemExit as exc:  # argparse-style exits
            rc = exc.code if isinstance(exc.code, int) else 1
        status = status or int(rc or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
